"""The RL benchmark's bookkeeping (eval/rl/benchmark.py): a kept run is resumed or reused only while its recipe is
the one it was started from; a run of an older version of the recipe is trained again and its scores dropped.
Training itself is stood in for by recording the ``llmrec rl`` command (tests/training/test_rl.py trains)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "eval" / "rl" / "benchmark.py"


@pytest.fixture()
def bench(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("rl_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    commands: list[list[str]] = []

    def record(*args: str) -> None:
        commands.append(list(args))
        run = Path(args[args.index("--out") + 1])
        (run / "config.yaml").write_text("run: {kind: rl}\n")

    monkeypatch.setattr(module, "llmrec", record)
    return module, commands


def test_a_kept_run_is_resumed_only_under_its_own_recipe(bench, tmp_path: Path) -> None:
    module, commands = bench
    run = module.train("rec-r1", 0, tmp_path, 3)
    assert run.name == "rec-r1-seed0-steps3" and commands[-1][-4:] == ["--trainer", "seed=0", "--max-steps", "3"]
    stamp = json.loads((run / "bench-recipe.json").read_text())
    assert stamp["trainer"]["seed"] == 0 and stamp["trainer"]["max_steps"] == 3
    assert stamp["grounding"] == "format"

    module.train("rec-r1", 0, tmp_path, 3)  # the same recipe: the interrupted run is continued
    assert commands[-1][-2:] == ["--resume", "--no-eval"]

    ranks = tmp_path / "ranks"
    ranks.mkdir()
    (ranks / f"rec-r1-u4-valid-{run.name}.npy").write_bytes(b"")
    (ranks / "rec-r1-u4-valid-base.npy").write_bytes(b"")
    older = {**stamp, "rewards": [{"name": "format"}, {"name": "blackbox", "k": 10}]}
    (run / "bench-recipe.json").write_text(json.dumps(older))
    (run / "checkpoint-10").mkdir()
    module.train("rec-r1", 0, tmp_path, 3)  # an older recipe's run: trained again from nothing
    assert "--resume" not in commands[-1] and not (run / "checkpoint-10").exists()
    assert json.loads((run / "bench-recipe.json").read_text()) == stamp
    assert sorted(p.name for p in ranks.iterdir()) == ["rec-r1-u4-valid-base.npy"]  # only that run's scores go


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
