"""The LLM benchmark script (eval/llm/benchmark.py) end to end on a reduced budget: its rows train, score and
render, a second invocation reuses the kept fine-tuning and scores instead of redoing them, and the rows kept
in the evidence directory stand when the work directory (the trained runs) is gone."""

from __future__ import annotations

import argparse
import functools
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest


def run_script(
    benchmark: ModuleType,
    capsys: pytest.CaptureFixture[str],
    rows: Iterable[str],
    sasrec: Path,
    work: Path,
    out: Path,
    *extra: str,
) -> str:
    """The script's command line on a reduced budget, inside the test process (its fine-tunings still run as
    their own processes); ``rows`` are its LLM rows, of which only the recipe runs. What it printed."""
    evidence = out.parent / "kept"  # never the repository's eval/llm/kept
    # zero-shot and the recipe row: the other LLM rows train the same way at other costs
    skip = ",".join(["gru4rec", *(name for name in rows if name != "recipe")])
    argv = ["--sasrec", str(sasrec), "--skip", skip, "--steps", "2", "--users", "6", "--seeds", "1"]
    argv += ["--work", str(work), "--out", str(out), "--evidence", str(evidence), *extra]
    capsys.readouterr()
    benchmark.main(argv)
    return capsys.readouterr().out


def test_benchmark_rows_and_reuse(sasrec_run: Path, tmp_path: Path, eval_script, capsys) -> None:
    work, out = tmp_path / "work", tmp_path / "RESULTS.md"
    benchmark = eval_script("llm")
    run_benchmark = functools.partial(run_script, benchmark, capsys, benchmark.LLM_ROWS)
    run_benchmark(sasrec_run, work, out)
    rows = {row["model"]: row for row in json.loads((tmp_path / "results.json").read_text())}
    assert {"random", "pop", "sasrec", "base LLM zero-shot"} <= rows.keys()
    (recipe,) = (row for name, row in rows.items() if name.endswith("(the recipe)"))
    assert recipe["steps"] == 2 and recipe["peak_rss_mib"] > 0 and recipe["train_seconds"] > 0
    for row in rows.values():
        for figures in (row, row["valid"]):  # test, and valid where choices are made
            assert 0.0 <= figures["hr@1"] <= figures["ndcg@5"] <= figures["ndcg@10"] <= 1.0
        assert row["seeds"] == 1 and row["tuned"]
    text = out.read_text()
    assert "## The recipe against its SASRec teacher" in text and "| test | all (6) |" in text
    assert "| valid | all (6) |" in text and "What was chosen while looking at which split" in text
    assert rows["base LLM zero-shot"]["answers"] == recipe["answers"] == "scored: always a candidate"
    assert not any("valid_ratio" in row for row in rows.values())  # valid by construction: no ratio claimed
    assert "| base LLM zero-shot |" in out.read_text() and "2 optimiser steps each" in out.read_text()
    assert "## Choices made on validation" not in text  # nothing scored on validation alone yet

    evidence = tmp_path / "kept"
    kept = {path.name: path.stat().st_mtime_ns for path in evidence.glob("*.json")}
    trained = (work / "sft-recipe" / "metrics.json").stat().st_mtime_ns
    assert set(kept) == {"sasrec.json", "zero-shot.json", "recipe.json"}
    run_benchmark(sasrec_run, work, out)
    assert (work / "sft-recipe" / "metrics.json").stat().st_mtime_ns == trained  # the fine-tuning reused
    assert {path.name: path.stat().st_mtime_ns for path in evidence.glob("*.json")} == kept  # scores reused
    assert json.loads((tmp_path / "results.json").read_text()) == list(rows.values())

    # developing a lever: validation alone, printed; the rows the full run scored are read from it, not redone
    rendered = out.stat().st_mtime_ns
    lever = [name for name in benchmark.LLM_ROWS if name != "r16"]  # r16 trains, the recipe is kept
    valid = run_script(benchmark, capsys, lever, sasrec_run, work, out, "--splits", "valid")
    assert "Validation only (6 users)" in valid and "| valid | all (6) |" in valid
    assert "| test |" not in valid and out.stat().st_mtime_ns == rendered
    assert (work / "sft-recipe" / "metrics.json").stat().st_mtime_ns == trained
    assert [path.name for path in (evidence / "valid").glob("*.json")] == ["r16.json"]
    assert "test_ranks" not in json.loads((evidence / "valid" / "r16.json").read_text())["row"]
    assert f"| {recipe['model']} | 1 | {recipe['valid']['hr@1']:.4f} |" in valid

    shutil.rmtree(work)  # a later session on another machine: only the repository's evidence is left
    run_benchmark(sasrec_run, work, out)
    assert not (work / "sft-recipe").exists()  # nothing trained again
    assert {path.name: path.stat().st_mtime_ns for path in evidence.glob("*.json")} == kept
    assert json.loads((tmp_path / "results.json").read_text()) == list(rows.values())
    # the lever's validation row is shown as a choice made on validation, beside the recipe it is weighed against
    choices = out.read_text().split("## Choices made on validation")[1].split("##")[0]
    (line,) = (line for line in choices.splitlines() if line.startswith(f"| {recipe['model']} |"))
    assert line.split(" | ")[1:3] == ["1", f"{recipe['valid']['hr@1']:.4f}"]  # seeds, valid HR@1
    assert f"| {benchmark.LLM_ROWS['r16'][0]} | 1 |" in choices
    recipe_entry = json.loads((evidence / "recipe.json").read_text())
    assert recipe_entry["users"] == 6 and recipe_entry["row"]["steps"] == 2
    assert len(recipe_entry["row"]["test_ranks"]) == len(recipe_entry["row"]["valid_ranks"]) == 6


def test_groups_split_targets_by_popularity_and_histories_by_length(eval_script) -> None:
    from types import SimpleNamespace

    import numpy as np

    benchmark = eval_script("llm")
    counts = np.array([0, 40, 25, 15, 10, 6, 4])  # item 0 is padding; 100 interactions
    examples = [SimpleNamespace(target=t, position=p) for t, p in ((1, 50), (2, 8), (3, 30), (6, 12), (4, 90))]
    groups = benchmark.groups_of(examples, counts)
    # interactions before item 1: 0% (head); item 2: 40%, item 3: 65% (torso: under two thirds); items 4-6: 80%+
    assert groups["head target"].tolist() == [True, False, False, False, False]
    assert groups["torso target"].tolist() == [False, True, True, False, False]
    assert groups["tail target"].tolist() == [False, False, False, True, True]
    assert groups["short history"].tolist() == [False, True, False, True, False]  # 8 and 12: at most the 25th pct, 12


def test_a_kept_llm_row_stands_only_for_its_teachers_weights(sasrec_run: Path, tmp_path: Path, eval_script) -> None:
    benchmark = eval_script("llm")
    work = tmp_path / "work"
    teacher = work / "sasrec"
    shutil.copytree(sasrec_run, teacher)
    args = argparse.Namespace(work=work, steps=2, users=6)
    kept = benchmark.Kept(tmp_path / "kept", users=6)
    digest = benchmark.encoder_digest(teacher)
    recipe_text = benchmark.row_recipe("recipe", teacher, work).read_text()
    what = benchmark.budget_of(recipe_text, 2, digest, 6)
    row = {"valid_ranks": [0] * 6, "test_ranks": [1] * 6}
    assert benchmark.llm_row("recipe", 0, teacher, args, kept) is None  # nothing kept yet
    kept.keep("recipe", benchmark.budget_of(recipe_text, 2, digest), row)  # checkpoints chosen on the recipe's users
    assert benchmark.llm_row("recipe", 0, teacher, args, kept) is None
    kept.keep("recipe", what, row)
    assert benchmark.llm_row("recipe", 0, teacher, args, kept) == row
    assert benchmark.llm_row("recipe", 0, teacher, argparse.Namespace(work=work, steps=3, users=6), kept) is None
    older = json.loads(what)
    del older["task"]["counts"]  # kept by an llmrec without that field: its default is what was trained
    kept.keep("recipe", json.dumps(older), row)
    assert benchmark.llm_row("recipe", 0, teacher, args, kept) == row
    older["task"]["max_history"] += 1
    kept.keep("recipe", json.dumps(older), row)
    assert benchmark.llm_row("recipe", 0, teacher, args, kept) is None  # a field that differs
    kept.keep("recipe", what, row)

    shutil.rmtree(teacher)  # the teacher's run is gone: its kept row names the weights
    assert benchmark.llm_row("recipe", 0, teacher, args, kept) is None  # and nothing of it is kept
    kept.keep("sasrec", digest, {"valid_ranks": [2] * 6, "test_ranks": [3] * 6, "digest": digest})
    assert benchmark.llm_row("recipe", 0, teacher, args, kept) == row
    kept.keep("sasrec", "0" * 64, {"valid_ranks": [2] * 6, "test_ranks": [3] * 6, "digest": "0" * 64})
    assert benchmark.llm_row("recipe", 0, teacher, args, kept) is None  # a teacher trained again: retrain
    assert benchmark.Kept(tmp_path / "kept", users=7).row("recipe", what) is None  # other users: scored anew


def test_a_validation_run_reads_the_full_runs_training_without_its_test(tmp_path: Path, eval_script) -> None:
    benchmark = eval_script("llm")
    full = benchmark.Kept(tmp_path / "kept", users=6)
    full.keep("recipe-s1", "what", {"valid_ranks": [0] * 6, "test_ranks": [1] * 6})
    valid = benchmark.Kept(tmp_path / "kept" / "valid", users=6, fallback=tmp_path / "kept")
    assert valid.entry("recipe-s1")["row"] == {"valid_ranks": [0] * 6}  # test stays unscored in a valid run
    valid.keep("recipe-s1", "what", {"valid_ranks": [2] * 6})
    assert valid.entry("recipe-s1")["row"] == {"valid_ranks": [2] * 6}  # its own entry first
    assert benchmark.Kept(tmp_path / "kept" / "valid", users=7, fallback=tmp_path / "kept").entry("recipe-s1") is None
    assert full.entry("recipe-s1")["row"]["test_ranks"] == [1] * 6  # the full run's entry is unchanged


def test_a_rows_training_figures_are_the_median_over_its_seeds(eval_script) -> None:
    benchmark = eval_script("llm")
    seeds = [{"wall_seconds": 5650.0}, {"wall_seconds": 400.0}, {"wall_seconds": 420.0}]
    assert benchmark.median_of(seeds, "wall_seconds") == 420.0  # one seed trained beside other work stands out
    assert benchmark.median_of([{"train_seconds": 10.0}, {}], "train_seconds") == 10.0  # a kept row without it
    assert benchmark.median_of([{}], "train_seconds") is None
