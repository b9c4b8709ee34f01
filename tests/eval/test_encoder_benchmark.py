"""The encoder benchmark script (eval/encoders/benchmark.py) end to end on one epoch, our rows only: each seed
trains in its own process, several seeds average into one row, a finished run is reused (not retrained) while its
settings stay the same, and a later invocation keeps the other rows."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "encoders" / "benchmark.py"


def run_benchmark(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--peers", "none", "--memory", "no", "--epochs", "1", *args]
    command += ["--out", str(tmp_path / "RESULTS.md"), "--kept", str(tmp_path / "results.json")]
    command += ["--work", str(tmp_path / "work")]
    result = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def kept_rows(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "results.json").read_text())["rows"]


def test_benchmark_seeds_and_kept_rows(tmp_path: Path) -> None:
    run_benchmark(tmp_path, "--models", "gru4rec", "--seeds", "2")
    gru = kept_rows(tmp_path)["llmrec gru4rec"]
    assert gru["seeds"] == 2 and [s["seed"] for s in gru["per_seed"]] == [42, 43]
    assert gru["epochs"] == 1 and gru["wall_seconds"] > 0 and gru["peak_mib"] > 0
    per_seed = [s["ndcg@10"] for s in gru["per_seed"]]
    assert gru["ndcg@10"] == pytest.approx(statistics.fmean(per_seed))
    assert gru["ndcg@10_sd"] == pytest.approx(statistics.stdev(per_seed))
    assert 0.0 < gru["ndcg@10"] <= gru["hr@10"] <= 1.0 and 0.0 < gru["c20_hr@1"] <= 1.0
    assert "--models gru4rec --seeds 2" in gru["command"]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "| llmrec gru4rec |" in text and f"{gru['ndcg@10']:.4f} ± {gru['ndcg@10_sd']:.4f}" in text

    logs = {path: path.stat().st_mtime_ns for path in (tmp_path / "work").glob("ours-gru4rec-*/log.jsonl")}
    assert len(logs) == 2
    # A kept run is tied to the sources its training loaded, not to the whole package: the server is not among them.
    made = json.loads((tmp_path / "work" / "ours-gru4rec-42" / "row.json").read_text())["made"]
    assert "encoders/gru4rec.py" in made["source_files"] and "eval/runner.py" in made["source_files"]
    assert not any(name.startswith(("serve/", "agent/", "inference/")) for name in made["source_files"])
    again = run_benchmark(tmp_path, "--models", "gru4rec", "--seeds", "2")  # same settings and code: no training
    assert again.stderr.count("reused:") == 2
    assert {path: path.stat().st_mtime_ns for path in logs} == logs
    reused = kept_rows(tmp_path)["llmrec gru4rec"]
    assert {k: v for k, v in reused.items() if k != "measured"} == {k: v for k, v in gru.items() if k != "measured"}

    run_benchmark(tmp_path, "--models", "pop")
    kept = kept_rows(tmp_path)
    assert kept["llmrec gru4rec"] == reused  # measured earlier, kept as it was
    pop = kept["llmrec pop"]
    assert pop.get("seeds", 1) == 1 and 0.0 < pop["ndcg@10"] <= pop["hr@10"] <= 1.0  # pop has nothing to seed
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.index("| llmrec gru4rec |") < text.index("| llmrec pop |")  # the table's model order
    assert "Side by side" not in text  # no RecBole row to compare with

    assert "reused:" in run_benchmark(tmp_path, "--models", "pop").stderr
    assert "reused:" not in run_benchmark(tmp_path, "--models", "pop", "--fresh").stderr
    changed = run_benchmark(tmp_path, "--models", "pop", "--epochs", "2")  # other settings: measured anew
    assert "reused:" not in changed.stderr and "--epochs 2" in kept_rows(tmp_path)["llmrec pop"]["command"]


def test_default_work_commits_what_going_on_needs_and_no_data() -> None:
    """The default --work is in the repository: git keeps each run's row and a RecBole run's resume state (so a
    run continues on a fresh clone) and ignores the rest, the exported ML-100K interactions above all."""
    runs = SCRIPT.parent / "runs"
    kept = ["ours-sasrec-42/row.json", "recbole-sasrec-2020/row.json", "recbole-sasrec-2020/spec.json"]
    kept += ["recbole-sasrec-2020-b256-d0.2/row.json", "recbole-sasrec-2020-b256-d0.2/resume.pth"]
    kept += ["recbole-sasrec-2020/resume.pth", "recbole-sasrec-2020/checkpoints/SASRec-Nov-25-2026_11-03-41.pth"]
    ignored = ["recbole-sasrec-2020/data/llmrec-ml-100k/llmrec-ml-100k.inter"]
    ignored += ["recbole-sasrec-2020/recbole-split.json"]
    ignored += ["recbole-sasrec-2020/checkpoints/llmrec-ml-100k-SequentialDataset.pth"]
    ignored += ["recbole-sasrec-2020/checkpoints/llmrec-ml-100k-for-SASRec-dataloader.pth"]
    ignored += ["ours-sasrec-42/checkpoints/last.pt", "ours-sasrec-42/checkpoints/best/model.safetensors"]
    ignored += ["ours-sasrec-42/log.jsonl", "recbole-sasrec-2020/log/SASRec/run.log", "recbole-sasrec-2020/resume.tmp"]
    check = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *kept, *ignored],
        cwd=runs,
        capture_output=True,
        text=True,
    )
    if check.returncode == 128 and "not a git repository" in check.stderr:
        pytest.skip("not in a git checkout")
    assert check.returncode in (0, 1), check.stderr
    # Each line: "SOURCE:LINE:PATTERN<TAB>PATH"; a path no pattern matches, or one matched by a "!" pattern, is kept.
    verdict = {}
    for line in check.stdout.splitlines():
        source, path = line.split("\t")
        pattern = source.split(":", 2)[-1]
        verdict[path] = pattern == "" or pattern.startswith("!")
    assert {path: verdict[path] for path in kept} == dict.fromkeys(kept, True)
    assert {path: verdict[path] for path in ignored} == dict.fromkeys(ignored, False)


def test_a_finished_recbole_run_is_reused_from_its_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, eval_script
) -> None:
    """A finished peer's row.json (with what made it) is returned without starting RecBole; a row made otherwise
    (here: another seed's settings) is not."""
    benchmark = eval_script("encoders")
    from recbole_peer import PINS, RECBOLE, recbole_config

    out = tmp_path / "recbole-gru4rec-2020-b256-d0.5"
    out.mkdir()
    made = {"model": "GRU4Rec", "threads": 2, "config": recbole_config("GRU4Rec", 300, 2020, 256, 0.5)}
    made["packages"] = [RECBOLE, *PINS]
    assert made["config"]["train_batch_size"] == 256 and made["config"]["dropout_prob"] == 0.5
    row = {"name": "RecBole GRU4Rec", "ndcg@10": 0.06, "measured": "2026-11-25"}
    (out / "row.json").write_text(json.dumps({"made": made, "row": row}))

    def no_recbole(*args, **kwargs):
        pytest.fail("ran RecBole")

    monkeypatch.setattr(benchmark.subprocess, "run", no_recbole)
    run = benchmark.run_peer
    assert run("gru4rec", tmp_path, 300, {"measured": "today"}, seed=2020, batch=256, dropout=0.5) == row
    (out / "row.json").write_text(json.dumps({"made": made | {"threads": 1}, "row": row}))
    with pytest.raises(pytest.fail.Exception, match="ran RecBole"):
        run("gru4rec", tmp_path, 300, {"measured": "today"}, seed=2020, batch=256, dropout=0.5)
    with pytest.raises(pytest.fail.Exception, match="ran RecBole"):  # another setting is another run
        run("gru4rec", tmp_path, 300, {"measured": "today"}, seed=2020, batch=2048, dropout=0.5)


def test_the_peer_is_its_best_setting_on_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ml100k, eval_script
) -> None:
    """Every (batch, dropout) of the grid is a RecBole run; the peer row is the one with the best validation NDCG@10,
    whatever its test score; RESULTS lists every setting tried, how each side trains, and the paired interval."""
    import numpy as np

    from llmrec.data.splits import leave_one_out_split

    benchmark = eval_script("encoders")
    from recbole_peer import PINS, RECBOLE, recbole_config

    users = leave_one_out_split(ml100k).test.users.tolist()
    assert benchmark.test_users() == users
    grid = benchmark.peer_grid("gru4rec")
    assert grid == [(256, 0.2), (256, 0.3), (256, 0.5), (2048, 0.2), (2048, 0.3), (2048, 0.5)]  # with its default
    rng = np.random.default_rng(0)
    for seed in (2020, 2021):
        for n, (batch, dropout) in enumerate(grid):
            if seed == 2021 and (batch, dropout) != (256, 0.3):
                continue
            ranks = rng.integers(0, 40, size=len(users)).tolist()
            row = {"name": "RecBole GRU4Rec", "seed": seed, "batch": batch, "dropout": dropout, "c20_hr@1": None}
            row |= {"valid_ndcg@10": 0.05 + (0.01 if (batch, dropout) == (256, 0.3) else 0.001 * n)}
            row |= {"hr@10": 0.1, "ndcg@10": 0.2 if n == 5 else 0.05, "mrr@10": 0.03, "test_ranks": ranks}
            row |= {"train_examples": {"prefixes": 97_000}, "seconds_per_epoch": 1.0, "epochs": 3 + n}
            row |= {"best_epoch": 2, "wall_seconds": 60.0 * (n + 1), "cpu_seconds": 60.0, "peak_mib": 900.0}
            row |= {"resumed_after": [], "measured": "2026-11-28", "command": "c", "cpus": "2 CPU cores"}
            config = recbole_config("GRU4Rec", 300, seed, batch, dropout)
            made = {"model": "GRU4Rec", "threads": 2 if seed == 2020 else 1, "config": config}
            out = tmp_path / "work" / f"recbole-gru4rec-{seed}-b{batch}-d{dropout}"
            out.mkdir(parents=True)
            (out / "row.json").write_text(json.dumps({"made": made | {"packages": [RECBOLE, *PINS]}, "row": row}))

    def ours(model, workdir, epochs, stamp, seed=42, cpu=None):  # our side is tested above, on real training
        ranks = (np.arange(len(users)) % 30).tolist()
        return {"name": "llmrec gru4rec", "seed": seed, "valid_ndcg@10": 0.06, "hr@10": 0.12, "ndcg@10": 0.06,
                "mrr@10": 0.04, "c20_hr@1": 0.4, "test_ranks": ranks, "c20_ranks": ranks, "seconds_per_epoch": 1.0,
                "train_examples": {"windows": 5000, "targets": 90_000, "batches": 40}, "epochs": 4, "best_epoch": 2,
                "wall_seconds": 30.0, "cpu_seconds": 30.0, "peak_mib": 600.0} | stamp  # fmt: skip

    real_run = subprocess.run

    def no_recbole(command, *args, **kwargs):  # other commands (platform's uname) run as usual
        if any("recbole_peer" in str(part) for part in command):
            pytest.fail("ran RecBole")
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(benchmark, "run_ours", ours)
    monkeypatch.setattr(benchmark.subprocess, "run", no_recbole)
    monkeypatch.setattr(benchmark, "on_free_cores", lambda jobs: [job(0) for job in jobs])
    out, kept = tmp_path / "RESULTS.md", tmp_path / "results.json"
    argv = ["benchmark.py", "--models", "gru4rec", "--seeds", "2", "--memory", "no", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, "--kept", str(kept), "--work", str(tmp_path / "work")])
    benchmark.main()
    peer = json.loads(kept.read_text())["rows"]["RecBole GRU4Rec"]
    assert (peer["batch"], peer["dropout"], peer["seeds"]) == (256, 0.3, 2)  # chosen on validation, not on test
    assert [s["seed"] for s in peer["per_seed"]] == [2020, 2021] and len(peer["test_ranks_per_seed"]) == 2
    text = out.read_text()
    assert "| **256** | **0.3** | **0.0600** |" in text and text.count("| 2048 |") == 3
    assert "train batch 256 prefixes" in text and "97,000 training examples" in text and "90,000 targets" in text
    assert "paired difference" in text and "over 943 users" in text
