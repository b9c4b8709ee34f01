"""The RL benchmark's bookkeeping (eval/rl/benchmark.py): a kept run is resumed or reused only while its recipe is
the one it was started from; a run of an older version of the recipe is trained again and its scores dropped; a run
whose record and ranks are kept in the repository is not trained again in another session. Training itself is
stood in for by recording the ``llmrec rl`` command (tests/training/test_rl.py trains)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch, eval_script):
    module = eval_script("rl")
    commands: list[list[str]] = []

    def record(*args: str) -> None:
        commands.append(list(args))
        run = Path(args[args.index("--out") + 1])
        (run / "config.yaml").write_text("run: {kind: rl}\n")

    monkeypatch.setattr(module, "llmrec", record)
    return module, commands


def finish(run: Path, seconds: float = 60.0) -> None:
    """What a finished ``llmrec rl`` run leaves that the benchmark reads."""
    metrics = {"finished": True, "steps": 3, "examples": 12, "train_seconds": seconds, "seconds_per_step": 20.0}
    (run / "metrics.json").write_text(json.dumps({**metrics, "peak_rss_mib": 2048.0}))
    (run / "log.jsonl").write_text('{"step": 1, "reward": 0.5, "rewards/validity/mean": 0.0}\n')


def test_a_kept_run_is_resumed_only_under_its_own_recipe(bench, tmp_path: Path) -> None:
    module, commands = bench
    evidence = module.Evidence(tmp_path / "kept")
    run = module.train("rec-r1", 0, tmp_path, 3, evidence, ["rec-r1-u4-h6-valid"])
    assert run.name == "rec-r1-seed0-steps3" and commands[-1][-4:] == ["--trainer", "seed=0", "--max-steps", "3"]
    stamp = json.loads((run / "bench-recipe.json").read_text())
    assert stamp["trainer"]["seed"] == 0 and stamp["trainer"]["max_steps"] == 3
    assert stamp["grounding"] == "format"

    module.train("rec-r1", 0, tmp_path, 3, evidence, [])  # the same recipe: the interrupted run is continued
    assert commands[-1][-2:] == ["--resume", "--no-eval"]

    finish(run)
    module.train("rec-r1", 0, tmp_path, 3, evidence, [])  # finished: kept, not trained again
    assert len(commands) == 2 and evidence.run(run.name)["recipe"] == stamp
    evidence.ranks(f"rec-r1-u4-h6-valid-{run.name}", lambda: np.arange(4))
    evidence.ranks("rec-r1-u4-h6-valid-base", lambda: np.arange(4))
    older = {**stamp, "rewards": [{"name": "format"}, {"name": "blackbox", "k": 10}]}
    (run / "bench-recipe.json").write_text(json.dumps(older))
    record = tmp_path / "kept" / "runs" / f"{run.name}.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "recipe": older}))  # kept from the older one
    (run / "checkpoint-10").mkdir()
    module.train("rec-r1", 0, tmp_path, 3, evidence, [])  # an older recipe's run: trained again from nothing
    assert "--resume" not in commands[-1] and not (run / "checkpoint-10").exists()
    assert json.loads((run / "bench-recipe.json").read_text()) == stamp
    kept = sorted(p.name for p in (tmp_path / "kept" / "ranks").iterdir())
    assert kept == ["rec-r1-u4-h6-valid-base.json"] and evidence.run(run.name) is None  # only that run's go


def test_a_run_kept_in_the_repository_is_not_trained_again_where_its_adapter_is_gone(bench, tmp_path: Path) -> None:
    module, commands = bench
    evidence = module.Evidence(tmp_path / "kept")
    tags = ["rec-r1-u4-h6-valid", "rec-r1-u4-h6-test"]
    run = module.train("rec-r1", 1, tmp_path / "work", 3, evidence, tags)
    finish(run, seconds=90.0)
    module.train("rec-r1", 1, tmp_path / "work", 3, evidence, tags)
    for tag in tags:
        evidence.ranks(f"{tag}-{run.name}", lambda: (np.array([0, 7, 2]), {"valid_ratio": 1.0}))
    shutil.rmtree(tmp_path / "work")  # another session, another machine: only the repository's files

    again = module.train("rec-r1", 1, tmp_path / "work", 3, evidence, tags)
    assert again == run and len(commands) == 1 and not run.exists()
    assert evidence.ranks(f"{tags[0]}-{run.name}", lambda: pytest.fail("recomputed")).tolist() == [0, 7, 2]
    assert evidence.reports(tags[1]) == {run.name: {"valid_ratio": 1.0}}
    figures = module.training_figures([evidence.run(run.name)])
    assert figures["train_minutes"] == [1.5] and figures["peak_gib"] == [2.0] and figures["rollout_validity"] == [0.0]

    module.train("rec-r1", 1, tmp_path / "work", 3, evidence, [*tags, "rec-r1-u0-h6-valid"])  # a row not kept
    assert len(commands) == 2 and commands[-1][-4:] == ["--trainer", "seed=1", "--max-steps", "3"]
    assert not any(evidence.has(f"{tag}-{run.name}") for tag in tags)  # no row mixes two trainings
    assert evidence.run(run.name) is None  # kept again once this training finishes


def test_a_stale_work_directory_does_not_drop_evidence_of_the_current_recipe(bench, tmp_path: Path) -> None:
    module, commands = bench
    evidence = module.Evidence(tmp_path / "kept")
    run = module.train("rec-r1", 2, tmp_path, 3, evidence, ["rec-r1-u4-h6-valid"])
    finish(run)
    module.train("rec-r1", 2, tmp_path, 3, evidence, [])
    evidence.ranks(f"rec-r1-u4-h6-valid-{run.name}", lambda: np.arange(4))
    stamp = json.loads((run / "bench-recipe.json").read_text())
    (run / "bench-recipe.json").write_text(json.dumps({**stamp, "dataset": "an older one"}))

    module.train("rec-r1", 2, tmp_path, 3, evidence, ["rec-r1-u4-h6-valid"])
    assert len(commands) == 1 and not run.exists()  # the stale directory goes, the kept run stands
    assert evidence.has(f"rec-r1-u4-h6-valid-{run.name}") and evidence.run(run.name)["recipe"] == stamp


def test_the_popularity_row_ranks_by_training_interactions_with_ties_against_the_target(bench, ml100k) -> None:
    from types import SimpleNamespace

    from llmrec.data.splits import leave_one_out_split
    from llmrec.encoders.pop import Pop, PopConfig

    module, _ = bench
    split = leave_one_out_split(ml100k, min_len=3)
    pop = Pop(ml100k.num_items, PopConfig())
    pop.fit([s[:n] for s, n in zip(split.sequences, split.train_len, strict=True)])
    counts = pop.item_embeddings()[:, 0].numpy()
    top = int(counts[1:].argmax()) + 1
    tied = [i for i in range(1, len(counts)) if counts[i] == 1.0][:2]  # two items seen once in training
    examples = [SimpleNamespace(target=t) for t in (top, *tied)]
    ranks = module.popularity_ranks(ml100k, examples).tolist()
    at_least_one = int((counts[1:] >= 1).sum())
    assert ranks == [0, at_least_one - 1, at_least_one - 1]  # every item seen once or more is ahead or tied


def test_the_c20_popularity_row_orders_each_users_candidates_by_training_users(bench, ml100k) -> None:
    from types import SimpleNamespace

    from llmrec.data.dataset import user_counts
    from llmrec.data.splits import leave_one_out_split

    module, _ = bench
    split = leave_one_out_split(ml100k, min_len=3)
    counts = user_counts(split.train_sequences(), ml100k.num_items)
    once = [i for i in range(1, len(counts)) if counts[i] == 1][:2]  # two items one training user chose
    examples = [
        SimpleNamespace(candidates=[50, 1, *once], target=50),  # Star Wars, the most chosen: first
        SimpleNamespace(candidates=[50, 1, *once], target=1),  # Toy Story: behind Star Wars only
        SimpleNamespace(candidates=[50, 1, *once], target=once[1]),  # tied with once[0]: the tie counts against it
    ]
    assert counts[50] > counts[1] > 1
    assert module.candidate_popularity_ranks(ml100k, examples).tolist() == [0, 1, 3]


def test_results_say_what_was_chosen_on_which_split_and_list_the_tries(bench) -> None:
    module, _ = bench
    rng = np.random.default_rng(0)
    ranks = {which: rng.integers(5, 40, 50) for which in ("valid", "test")}
    rows = {row: dict(ranks) for row in ("base", "titles-bm25", "texts-bm25")}
    rows["rl"] = {which: np.zeros((2, 50), dtype=int) for which in ranks}  # two seeds, every target ranked first
    section = module.summarise("rec-r1", rows, {"valid": 50, "test": 50})
    section |= {"date": "2026-12-06", "machine": "2 CPU cores", "command": "python eval/rl/benchmark.py"}
    section |= {"seeds": [0, 1], "max_steps": "the recipe's", "answers": {}}
    section["training"] = {"steps": 80, "prompts": 2829, "train_minutes": [45.5, 46.0]}
    section["training"] |= {"seconds_per_step": [34.1, 34.5], "peak_gib": [6.76, 6.8]}
    text = module.render({"rec-r1": section})
    assert module.SETUP["rec-r1"] in text and "seeds [0, 1]" in text
    assert "### Tries on validation" in text
    tries = json.loads(module.TRIALS.read_text())["rec-r1"]["trials"]
    assert all(f"| {t['changes']} | {t['outcome']} |" in text for t in tries)
    rl_rows = [line for line in text.splitlines() if line.startswith("| after RL")]
    assert len(rl_rows) == 2 and all(row.count("**+") == 6 for row in rl_rows)  # beats all three, on both metrics
