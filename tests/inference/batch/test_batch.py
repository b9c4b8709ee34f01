"""Batch inference: tasks, bad rows, resume after a crash, Parquet input, the CLI, and the Ray Data backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from llmrec.errors import LlmrecError
from llmrec.inference.batch import BatchConfig, finished_ids, run_batch
from llmrec.inference.engine import Request, SamplingConfig

QUESTIONS = [
    "Name three fruits.",
    "What is 2+2?",
    "Name a color.",
    "Say hello.",
    "Name a planet.",
    "Name a dog breed.",
]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def generate_rows(count: int = 6) -> list[dict]:
    return [{"id": f"q{i}", "messages": [{"role": "user", "content": QUESTIONS[i % 6]}]} for i in range(count)]


def test_generate_reports_bad_rows_and_keeps_going(hf_engine, tmp_path) -> None:
    rows = [
        *generate_rows(2),
        {"id": "no-prompt"},
        "this is not json",
        {"id": "q0", "prompt": "a repeated id"},
        {"prompt": "no id"},
        {"id": "text", "prompt": "The capital of France is"},
    ]
    config = BatchConfig("generate", write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", chunk_size=3)
    config.sampling = SamplingConfig(max_new_tokens=8)
    summary = run_batch(config, hf_engine)
    out = read_jsonl(config.out)
    assert [r["id"] for r in out] == ["q0", "q1", "text"]
    assert all(r["usage"]["completion_tokens"] > 0 and r["text"] for r in out)
    errors = read_jsonl(config.errors_path)
    assert [(e["row"], e["id"]) for e in errors] == [(3, "no-prompt"), (4, None), (5, "q0"), (6, None)]
    assert "duplicate id" in errors[2]["error"] and "missing field 'id'" in errors[3]["error"]
    assert summary.rows_written == 3 and summary.errors == 4
    with pytest.raises(LlmrecError, match="exists; pass --resume"):
        run_batch(config, hf_engine)


def test_rank_answers_a_grounded_candidate_and_ranks_all(hf_engine, tmp_path) -> None:
    rows = [
        {"id": 1, "history": [1, 95, 50], "candidates": [100, 258, 288, 12, 121]},
        {"id": 2, "history": ["Toy Story", "Aladdin"], "candidates": ["Fargo", "Heat", "Scream"]},
        {"id": 3, "history": [1], "candidates": [99999]},
        {"id": 4, "history": [1], "candidates": []},
        {"id": 5, "candidates": [1, 2]},
        {"id": 6, "history": [1], "candidates": ["Toy Story 5", "Fargo"]},
    ]
    config = BatchConfig("rank", write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", dataset="ml-100k")
    summary = run_batch(config, hf_engine).to_dict()
    out = read_jsonl(config.out)
    assert [r["id"] for r in out] == [1, 2]
    assert summary["valid_ratio"] == 1.0 and summary["duplicate_ratio"] == 0.0
    assert summary["in_history_ratio"] == sum(r["in_history"] for r in out) / 2
    first = out[0]
    assert first["item_id"] in [100, 258, 288, 12, 121] and first["resolved_by"] == "constrained"
    assert sorted(r["item_id"] for r in first["ranking"]) == [12, 100, 121, 258, 288]
    assert [r["logprob"] for r in first["ranking"]] == sorted((r["logprob"] for r in first["ranking"]), reverse=True)
    assert out[1]["title"] in ["Fargo", "Heat", "Scream"]
    errors = {e["id"]: e["error"] for e in read_jsonl(config.errors_path)}
    assert "no item with id 99999" in errors[3] and "empty candidate list" in errors[4]
    assert "missing field 'history'" in errors[5]
    assert "no item titled 'Toy Story 5'" in errors[6]  # a title that merely contains a catalog title is unknown


def test_rank_without_a_dataset_takes_titles(hf_engine, tmp_path) -> None:
    rows = [
        {"id": "t", "history": ["Alien", "Heat"], "candidates": ["Brazil", "Fargo"]},
        {"id": "i", "history": [1], "candidates": [2]},
    ]
    config = BatchConfig("rank", write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl")
    run_batch(config, hf_engine)
    (out,) = read_jsonl(config.out)
    assert out["title"] in ("Brazil", "Fargo") and out["item_id"] is None
    assert "need --dataset" in read_jsonl(config.errors_path)[0]["error"]


def test_catalog_grounded_generation_from_parquet(hf_engine, tmp_path) -> None:
    rows = pd.DataFrame({"id": ["a", "b"], "prompt": ["My favourite movie is", "Tonight I will watch"]})
    rows.to_parquet(tmp_path / "in.parquet")
    config = BatchConfig(
        "generate", tmp_path / "in.parquet", tmp_path / "out.jsonl", dataset="ml-100k", ground="catalog"
    )
    config.sampling = SamplingConfig(n=3, temperature=1.0, seed=5, max_new_tokens=4)
    run_batch(config, hf_engine)
    out = read_jsonl(config.out)
    assert len(out) == 2
    for row in out:
        assert len(row["items"]) == 3 and all(i["resolved_by"] == "constrained" and i["item_id"] for i in row["items"])


def test_reason_keeps_every_path_trace(hf_engine, tmp_path) -> None:
    rows = [{"id": "r", "history": [1, 95, 50], "candidates": [100, 258, 288], "paths": 3}]
    config = BatchConfig("reason", write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", dataset="ml-100k")
    run_batch(config, hf_engine)
    (out,) = read_jsonl(config.out)
    assert len(out["paths"]) == 3 and out["item_id"] in (100, 258, 288)
    assert sorted(r["item_id"] for r in out["ranking"]) == [100, 258, 288]
    assert out["ranking"][0]["item_id"] == out["item_id"] and out["ranking"][0]["votes"] >= 1
    assert all(p["item_id"] in (100, 258, 288) for p in out["paths"])


@pytest.fixture(scope="module")
def short_context_engine():
    """The default model with a 160-token context that rejects longer prompts."""
    from llmrec.inference.hf import HFEngine

    engine = HFEngine(max_model_len=160, overflow="reject")
    yield engine
    engine.close()


def test_an_over_long_row_goes_to_the_errors_file_alone(short_context_engine, tmp_path) -> None:
    long = "I watched " + ", ".join(["Star Wars"] * 80) + ". Recommend a movie."
    rows = [*generate_rows(2), {"id": "long", "prompt": long}, *generate_rows(3)[2:]]
    sampling = SamplingConfig(max_new_tokens=4)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    config = BatchConfig("generate", source, tmp_path / "out.jsonl", sampling=sampling)
    summary = run_batch(config, short_context_engine)
    assert [r["id"] for r in read_jsonl(config.out)] == ["q0", "q1", "q2"]
    (error,) = read_jsonl(config.errors_path)
    assert (error["row"], error["id"]) == (3, "long") and "context" in error["error"]
    assert summary.rows_written == 3 and summary.errors == 1


def test_an_over_long_reason_row_fails_alone(short_context_engine, tmp_path) -> None:
    rows = [
        {"id": "short", "history": [1], "candidates": [100, 258]},
        {"id": "long", "history": list(range(1, 21)), "candidates": list(range(100, 120))},
    ]
    sampling = SamplingConfig(temperature=0.8, max_new_tokens=8)
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    config = BatchConfig("reason", source, tmp_path / "out.jsonl", dataset="ml-100k", paths=2, sampling=sampling)
    run_batch(config, short_context_engine)
    (out,) = read_jsonl(config.out)
    assert out["id"] == "short" and len(out["paths"]) == 2
    assert [e["id"] for e in read_jsonl(config.errors_path)] == ["long"]


def test_reason_samples_by_default_and_refuses_greedy_paths(hf_engine, tmp_path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "history": [1], "candidates": [100, 258]}])
    config = BatchConfig("reason", source, tmp_path / "out.jsonl", dataset="ml-100k")
    assert config.sampling.temperature > 0 and config.sampling.max_new_tokens == 128
    with pytest.raises(LlmrecError, match="greedy decoding .* would make them identical"):
        BatchConfig("reason", source, tmp_path / "o.jsonl", dataset="ml-100k", sampling=SamplingConfig())
    short = BatchConfig(
        "reason", source, tmp_path / "short.jsonl", dataset="ml-100k", paths=2,
        sampling=SamplingConfig(temperature=0.8, max_new_tokens=5),
    )  # fmt: skip
    run_batch(short, hf_engine)
    (out,) = read_jsonl(short.out)
    assert out["usage"]["completion_tokens"] <= 2 * (5 + 12)  # rationales of at most 5 tokens, then short answers


def test_resume_cuts_a_torn_line_and_never_duplicates(hf_engine, tmp_path) -> None:
    # One row per chunk: in bf16 a greedy answer can depend on its batch-mates' padding, so equal chunks are
    # what makes the resumed output comparable byte for byte.
    source = write_jsonl(tmp_path / "in.jsonl", generate_rows(5))
    config = BatchConfig("generate", source, tmp_path / "out.jsonl", chunk_size=1)
    config.sampling = SamplingConfig(max_new_tokens=6)
    reference = tmp_path / "reference.jsonl"
    run_batch(BatchConfig("generate", source, reference, chunk_size=1, sampling=config.sampling), hf_engine)
    lines = reference.read_text().splitlines(keepends=True)
    config.out.write_text("".join(lines[:2]) + lines[2][:15])  # two finished rows and a torn third
    assert finished_ids(config.out) == {"q0", "q1"}
    config.resume = True
    summary = run_batch(config, hf_engine)
    assert summary.rows_skipped == 2 and summary.rows_written == 3
    assert config.out.read_text() == reference.read_text()
    assert run_batch(config, hf_engine).rows_written == 0


def test_cli_batch_killed_mid_run_resumes_to_the_same_output(tmp_path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", generate_rows(6))
    command = [
        sys.executable, "-m", "llmrec", "batch", "--input", str(source), "--engine", "hf",
        "--max-new-tokens", "6", "--chunk-size", "2",
    ]  # fmt: skip
    out = tmp_path / "out.jsonl"
    process = subprocess.Popen([*command, "--out", str(out)], stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (out.exists() and out.read_text().count("\n") >= 2) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    kept = finished_ids(out)
    assert 2 <= len(kept) < 6
    done = subprocess.run([*command, "--out", str(out), "--resume", "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["rows_skipped"] == len(kept) and summary["rows_written"] == 6 - len(kept)
    assert "batch generate" in done.stderr and "tok_s=" in done.stderr  # the progress bar, with tokens/s
    reference = tmp_path / "reference.jsonl"
    subprocess.run([*command, "--out", str(reference)], check=True, capture_output=True)
    ordered = sorted(read_jsonl(out), key=lambda r: r["id"])
    assert ordered == read_jsonl(reference)


def test_cli_batch_applies_a_lora_adapter_to_every_row(tmp_path, lora_dir, hf_engine, llmrec_here) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", generate_rows(2))
    llmrec_here("batch", "--input", str(source), "--engine", "hf", "--max-new-tokens", "8",
                "--out", str(tmp_path / "lora.jsonl"), "--lora", str(lora_dir))  # fmt: skip
    adapted = read_jsonl(tmp_path / "lora.jsonl")
    requests = [Request(messages=row["messages"], lora=lora_dir) for row in generate_rows(2)]
    expected = hf_engine.generate(requests, SamplingConfig(max_new_tokens=8))
    assert [r["text"] for r in adapted] == [e.completions[0].text for e in expected]


def test_cli_batch_bad_arguments_are_one_line_errors(tmp_path, llmrec_here) -> None:
    run = llmrec_here("batch", "--input", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o"), check=False)
    assert run.returncode == 1 and run.stderr.strip().endswith("no such input file")
    run = llmrec_here("batch", "--input", "x", "--out", "y", "--task", "summarise", check=False)
    assert run.returncode == 1 and "unknown task 'summarise'" in run.stderr
    source = write_jsonl(tmp_path / "in.jsonl", generate_rows(1))
    run = llmrec_here("batch", "--input", str(source), "--out", str(tmp_path / "o.jsonl"), "--engine", "openai",
                      "--overflow", "reject", check=False)  # fmt: skip
    assert run.returncode == 1 and "--overflow does not apply to the openai engine" in run.stderr
    with pytest.raises(AssertionError, match="starts vLLM"):  # in process, the fixture keeps vLLM's engine out
        llmrec_here("batch", "--input", str(source), "--out", str(tmp_path / "v.jsonl"), "--engine", "vllm")


def test_ray_backend_gives_the_local_result(hf_engine, tmp_path) -> None:
    ray = pytest.importorskip("ray")
    from llmrec.inference.batch import run_batch_ray

    source = write_jsonl(tmp_path / "in.jsonl", [*generate_rows(4), {"id": "bad"}])
    sampling = SamplingConfig(max_new_tokens=6)
    local = BatchConfig("generate", source, tmp_path / "local.jsonl", chunk_size=2, sampling=sampling)
    run_batch(local, hf_engine)
    distributed = BatchConfig("generate", source, tmp_path / "ray.jsonl", chunk_size=2, sampling=sampling)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_batch_ray(distributed, "hf", None, {}, actors=1)
    finally:
        ray.shutdown()
    assert summary.rows_written == 4 and summary.errors == 1
    ours, theirs = sorted(read_jsonl(distributed.out), key=lambda r: r["id"]), read_jsonl(local.out)
    # The actor runs torch on its own thread count, so log-probs may differ in the last float digits.
    assert [r["logprob"] for r in ours] == pytest.approx([r["logprob"] for r in theirs], abs=1e-4)
    assert [r | {"logprob": 0} for r in ours] == [r | {"logprob": 0} for r in theirs]
    assert read_jsonl(distributed.errors_path)[0]["row"] == 5
