"""The encoder benchmark script (eval/encoders/benchmark.py) end to end on one epoch, our rows only: each seed
trains in its own process, several seeds average into one row, a finished run is reused instead of retrained, and
a later invocation keeps the other rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "encoders" / "benchmark.py"


def run_benchmark(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--peers", "none", "--memory", "no", "--epochs", "1", *args]
    command += ["--out", str(tmp_path / "RESULTS.md"), "--kept", str(tmp_path / "results.json")]
    command += ["--work", str(tmp_path / "work")]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=900)


def test_benchmark_seeds_and_kept_rows(tmp_path: Path) -> None:
    first = run_benchmark(tmp_path, "--models", "gru4rec", "--seeds", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    gru = rows["llmrec gru4rec"]
    assert gru["seeds"] == 2 and [s["seed"] for s in gru["per_seed"]] == [42, 43]
    assert gru["epochs"] == 1 and gru["wall_seconds"] > 0 and gru["peak_mib"] > 0
    per_seed = [s["ndcg@10"] for s in gru["per_seed"]]
    assert gru["ndcg@10"] == sum(per_seed) / 2 and gru["ndcg@10_sd"] >= 0.0
    assert 0.0 < gru["ndcg@10"] <= gru["hr@10"] <= 1.0 and 0.0 < gru["c20_hr@1"] <= 1.0
    assert gru["command"].endswith("--seeds 2")
    assert "| llmrec gru4rec |" in (tmp_path / "RESULTS.md").read_text()
    assert f"{gru['ndcg@10']:.4f} ± {gru['ndcg@10_sd']:.4f}" in (tmp_path / "RESULTS.md").read_text()

    logs = {path: path.stat().st_mtime_ns for path in (tmp_path / "work").glob("ours-gru4rec-*/log.jsonl")}
    assert len(logs) == 2
    again = run_benchmark(tmp_path, "--models", "gru4rec", "--seeds", "2")  # same settings and code: no training
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("reused:") == 2
    assert {path: path.stat().st_mtime_ns for path in logs} == logs
    assert json.loads((tmp_path / "results.json").read_text())["rows"]["llmrec gru4rec"] == gru

    second = run_benchmark(tmp_path, "--models", "pop")
    assert second.returncode == 0, second.stderr[-3000:]
    kept = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert kept["llmrec gru4rec"] == gru  # measured earlier, kept as it was
    pop = kept["llmrec pop"]
    assert pop.get("seeds", 1) == 1 and 0.0 < pop["ndcg@10"] <= pop["hr@10"] <= 1.0  # pop has nothing to seed
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.index("| llmrec gru4rec |") < text.index("| llmrec pop |")  # the table's model order
    assert "Side by side" not in text  # no RecBole row to compare with
