"""The LLM benchmark script (eval/llm/benchmark.py) end to end on a reduced budget: its rows train, score and
render, and a second invocation reuses the kept fine-tuning and scores instead of redoing them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "llm" / "benchmark.py"


def run_benchmark(sasrec: Path, work: Path, out: Path) -> subprocess.CompletedProcess:
    # zero-shot and the recipe row: the text, id-vector and hybrid rows train the same way at other costs
    command = [sys.executable, str(SCRIPT), "--sasrec", str(sasrec), "--skip", "gru4rec,text,id-vector,hybrid"]
    command += ["--steps", "2", "--users", "3", "--work", str(work), "--out", str(out)]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=900)


def test_benchmark_rows_and_reuse(sasrec_run: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "RESULTS.md"
    first = run_benchmark(sasrec_run, work, out)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = {row["model"]: row for row in json.loads((tmp_path / "results.json").read_text())}
    assert {"random", "pop", "sasrec", "base LLM zero-shot"} <= rows.keys()
    (recipe,) = (row for name, row in rows.items() if name.endswith("(the recipe)"))
    assert recipe["steps"] == 2 and recipe["peak_rss_mib"] > 0 and recipe["train_seconds"] > 0
    for row in rows.values():
        assert 0.0 <= row["hr@1"] <= row["ndcg@5"] <= row["ndcg@10"] <= 1.0
    assert rows["base LLM zero-shot"]["answers"] == recipe["answers"] == "scored: always a candidate"
    assert not any("valid_ratio" in row for row in rows.values())  # valid by construction: no ratio claimed
    assert "| base LLM zero-shot |" in out.read_text() and "2 optimiser steps each" in out.read_text()

    kept = {path.name: path.stat().st_mtime_ns for path in work.glob("eval-*.json")}
    trained = (work / "sft-recipe" / "metrics.json").stat().st_mtime_ns
    assert set(kept) == {"eval-zero-shot.json", "eval-recipe.json"}
    second = run_benchmark(sasrec_run, work, out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (work / "sft-recipe" / "metrics.json").stat().st_mtime_ns == trained  # the fine-tuning reused
    assert {path.name: path.stat().st_mtime_ns for path in work.glob("eval-*.json")} == kept  # scores reused
    assert json.loads((tmp_path / "results.json").read_text()) == list(rows.values())
