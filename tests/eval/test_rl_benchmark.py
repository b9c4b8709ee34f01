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
