"""The run directory in one place: its layout, its kinds and their format versions, and atomic writes.

Every training command writes a run directory::

    RUN/config.yaml     the full resolved config, with a ``run`` section: kind, run format, llmrec version (and,
                        for LLM runs, what the recipe was resolved against)
    RUN/checkpoints/    the trainer's checkpoints; ``checkpoints/best/`` is an encoder run's best encoder
    RUN/metrics.json    training figures, then each evaluation (merged in, never overwritten whole)
    RUN/log.jsonl       one line per epoch or logged step

LLM runs (``llm-sft``, ``llm-rl``) also hold what serving needs (``lora/``, ``projector/``, ``items.safetensors``;
see :mod:`llmrec.adapters.bundle`). A run of a kind whose format this llmrec does not read is refused with the
command that makes a new one. Files are replaced atomically (written beside, then renamed), so a crash leaves the
old file or the new one, never half of either.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmrec import __version__
from llmrec.errors import LlmrecError

# The format each run kind is written in; a run of another format must be retrained.
RUN_FORMATS = {"encoder": 2, "llm-sft": 2, "llm-rl": 1}
LLM_KINDS = ("llm-sft", "llm-rl")
CONFIG = "config.yaml"
METRICS = "metrics.json"
LOG = "log.jsonl"
CHECKPOINTS = "checkpoints"
DESCRIBED = {"encoder": "an encoder run", "llm-sft": "an LLM-recommender run", "llm-rl": "an LLM-recommender run"}
RETRAIN = {
    "encoder": "llmrec encoder train",
    "llm-sft": "llmrec sft",
    "llm-rl": "llmrec rl",
}


def config_file(run: Path | str) -> Path:
    """``RUN/config.yaml``."""
    return Path(run) / CONFIG


def checkpoints_dir(run: Path | str) -> Path:
    """``RUN/checkpoints/``: the trainer's checkpoints."""
    return Path(run) / CHECKPOINTS


def best_checkpoint(run: Path | str) -> Path:
    """``RUN/checkpoints/best/``: an encoder run's best encoder (``encoder.json`` + ``model.safetensors``)."""
    return checkpoints_dir(run) / "best"


def last_checkpoint(run: Path | str) -> Path:
    """``RUN/checkpoints/last.pt``: everything an encoder run needs to continue."""
    return checkpoints_dir(run) / "last.pt"


def numbered_checkpoints(run: Path | str) -> list[Path]:
    """A transformers trainer's ``RUN/checkpoints/checkpoint-N`` directories, by step."""
    steps = {p: p.name.rsplit("-", 1)[1] for p in checkpoints_dir(run).glob("checkpoint-*")}
    return sorted((p for p, step in steps.items() if step.isdigit()), key=lambda p: int(steps[p]))


def sha256_file(path: Path | str) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: Path | str, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_config(run: Path | str, kind: str, values: dict[str, Any], facts: dict[str, Any] | None = None) -> None:
    """Write ``config.yaml``: ``values`` and a ``run`` section with the kind, its format, llmrec's version and
    ``facts`` (what the config was resolved against)."""
    import yaml

    if kind not in RUN_FORMATS:
        raise ValueError(f"unknown run kind {kind!r}")
    section = {"kind": kind, "run_format": RUN_FORMATS[kind], "llmrec": __version__, **(facts or {})}
    atomic_write_text(config_file(run), yaml.safe_dump({**values, "run": section}, sort_keys=False))


def _read_yaml(file: Path) -> dict[str, Any]:
    import yaml

    try:
        values = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        raise LlmrecError(f"{file}: unreadable ({error}); the run directory is corrupted") from None
    if not isinstance(values, dict):
        raise LlmrecError(f"{file}: not a run config (a mapping); the run directory is corrupted")
    return values


def _facts(values: dict[str, Any]) -> dict[str, Any]:
    facts = values.pop("run", None)
    if isinstance(facts, dict) and "kind" in facts:
        return facts
    if "run_format" in values and "model" in values:  # encoder runs before the run section existed
        return {"kind": "encoder", "run_format": values.pop("run_format"), "llmrec": values.pop("llmrec_version", "")}
    return {}


def run_kind(run: Path | str) -> str | None:
    """The kind of run directory ``run`` is (``encoder``, ``llm-sft``, ``llm-rl``), or ``None`` if it is none."""
    file = config_file(run)
    if not file.is_file():
        return None
    try:
        return _facts(_read_yaml(file)).get("kind")
    except LlmrecError:
        return None


def read_config(run: Path | str, kinds: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(values, facts)`` of a run's ``config.yaml``, refusing a run of another kind or format with what to do."""
    run = Path(run)
    file = config_file(run)
    if not file.is_file():
        raise LlmrecError(f"{run}: not a run directory (no {CONFIG})")
    values = _read_yaml(file)
    facts = _facts(values)
    kind = facts.get("kind")
    if kind not in kinds:
        expected = " or ".join(dict.fromkeys(DESCRIBED[k] for k in kinds))
        found = DESCRIBED.get(kind, "a run directory of another kind")
        raise LlmrecError(f"{run}: not {expected} (it is {found})")
    if facts.get("run_format") != RUN_FORMATS[kind]:
        raise LlmrecError(
            f"{file}: run format {facts.get('run_format')} is not {RUN_FORMATS[kind]} (it comes from another llmrec "
            f"version); make it again with `{RETRAIN[kind]}`"
        )
    return values, facts


def read_metrics(run: Path | str) -> dict[str, Any]:
    """``metrics.json`` of a run (empty when there is none yet)."""
    file = Path(run) / METRICS
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise LlmrecError(f"{file}: corrupted ({error}); delete it and evaluate the run again") from None


def update_metrics(run: Path | str, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into ``metrics.json`` (atomically) and return the whole content."""
    merged = {**read_metrics(run), **values}
    atomic_write_text(Path(run) / METRICS, json.dumps(merged, indent=2, default=str) + "\n")
    return merged


def write_log(run: Path | str, entries: list[dict[str, Any]]) -> None:
    """Replace ``log.jsonl`` with ``entries``, one JSON line each."""
    atomic_write_text(Path(run) / LOG, "".join(json.dumps(entry) + "\n" for entry in entries))


def append_log(run: Path | str, entry: dict[str, Any]) -> None:
    """Append one line to ``log.jsonl``."""
    with (Path(run) / LOG).open("a") as handle:
        handle.write(json.dumps(entry) + "\n")


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
