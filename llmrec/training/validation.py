"""Validation while an SFT run trains: each checkpoint is served as ``llmrec eval`` would serve it and scored on
the first validation users' c20 candidates; the best checkpoint by the chosen metric becomes the run's adapter.

Choices are made on validation only (``../shared/DESIGN.md``, evaluation discipline): test is never read here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from llmrec.errors import LlmrecError
from llmrec.inference.recommender import LLMRecommender
from llmrec.ranking.metrics import ranking_metrics, target_ranks
from llmrec.runs import append_log, numbered_checkpoints, read_metrics, update_metrics

SCORES = "valid_at_checkpoint"  # metrics.json: checkpoint name -> its validation figures


@contextmanager
def kept_rng() -> Iterator[None]:
    """Run the body without moving the training's random streams (loading a model draws from them), so a run
    that validates trains on exactly as one resumed from its checkpoint does."""
    state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        yield
    random.setstate(state)
    np.random.set_state(np_state)


def score_checkpoint(run: Path, checkpoint: Path, users: int, device: str = "auto") -> dict[str, float]:
    """c20 figures of ``checkpoint`` (a checkpoint directory of ``run``) on the first ``users`` validation users
    (0: all), served by the hf engine like a finished run, with the seconds the scoring took."""
    started = time.perf_counter()
    recommender = LLMRecommender.from_run(run, "hf", checkpoint=checkpoint, device=device)
    try:
        examples, scores = recommender.rank_split("valid", users, int(recommender.bundle.min_len))
    finally:
        recommender.close()
    ranks = target_ranks(scores, np.array([e.target_index for e in examples]))
    seconds = round(time.perf_counter() - started, 1)  # part of the run's train_seconds
    return {**ranking_metrics(ranks, (1, 5, 10)), "users": len(examples), "seconds": seconds}


def record_score(run: Path, checkpoint: Path, step: int, figures: dict[str, float]) -> None:
    """Keep ``checkpoint``'s figures in ``metrics.json`` and append them to ``log.jsonl``."""
    scores = read_metrics(run).get(SCORES, {})
    scores[checkpoint.name] = figures
    update_metrics(run, {SCORES: scores})
    append_log(run, {"step": step, **{f"valid_{k}": v for k, v in figures.items()}})


def best_of(checkpoints: list[Path], scores: dict[str, dict[str, float]], metric: str) -> Path:
    """The checkpoint with the highest ``metric`` among ``checkpoints`` (ties: the later one)."""
    return max(checkpoints, key=lambda c: (scores[c.name][metric], int(c.name.rsplit("-", 1)[1])))


def choose_checkpoint(run: Path, metric: str, users: int, device: str = "auto") -> tuple[Path, dict[str, Any]]:
    """The run's best checkpoint by validation ``metric`` (ties: the later one), scoring first any checkpoint on
    disk that has no figures yet (one written just before an interruption)."""
    found = numbered_checkpoints(run)
    if not found:
        raise LlmrecError(f"{run}: no checkpoints to choose from; the run saved none (save_steps)")
    scores = read_metrics(run).get(SCORES, {})
    for checkpoint in found:
        if checkpoint.name not in scores:
            figures = score_checkpoint(run, checkpoint, users, device)
            record_score(run, checkpoint, int(checkpoint.name.rsplit("-", 1)[1]), figures)
            scores[checkpoint.name] = figures
    best = best_of(found, scores, metric)
    return best, scores[best.name]


class Validation(TrainerCallback):
    """Scores every checkpoint on validation as it is saved (main process) and marks the best one so that
    checkpoint rotation (``save_total_limit``) keeps it."""

    def __init__(self, run: Path, metric: str, users: int, device: str = "auto") -> None:
        self.run, self.metric, self.users, self.device = Path(run), metric, users, device

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        with kept_rng():
            figures = score_checkpoint(self.run, checkpoint, self.users, self.device)
        record_score(self.run, checkpoint, state.global_step, figures)
        scores = read_metrics(self.run)[SCORES]
        best = best_of([c for c in numbered_checkpoints(self.run) if c.name in scores], scores, self.metric)
        # Only the path: rotation spares it. (``best_global_step`` would make this process alone enter a
        # distributed barrier at the next save.)
        state.best_model_checkpoint = str(best)
