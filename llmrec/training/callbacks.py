"""Trainer callbacks every llmrec training run uses (SFT and GRPO alike): the run's log and its clock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from llmrec.runs import append_log, read_metrics, update_metrics


class JsonLog(TrainerCallback):
    """Appends every log entry of the main process (losses, reward components, learning rate) to ``log.jsonl``."""

    def __init__(self, run: Path) -> None:
        self.run = Path(run)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs:
            append_log(self.run, {"step": state.global_step, **logs})


class Clock(TrainerCallback):
    """Records in ``metrics.json`` the training time at each checkpoint (``seconds_at_checkpoint``), so that a
    resumed run reports the time of a run that was never interrupted: ``base`` seconds were trained before this
    process started, at ``started`` (``time.perf_counter``)."""

    def __init__(self, run: Path, base: float, started: float) -> None:
        self.run, self.base, self.started = Path(run), base, started

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        seconds = read_metrics(self.run).get("seconds_at_checkpoint", {})
        seconds[f"checkpoint-{state.global_step}"] = round(self.base + time.perf_counter() - self.started, 1)
        update_metrics(self.run, {"seconds_at_checkpoint": seconds})


def seconds_before(run: Path, checkpoint: str | None) -> float:
    """Training time recorded at ``checkpoint`` (the steps after it are trained again), 0 without one."""
    if checkpoint is None:
        return 0.0
    return float(read_metrics(run).get("seconds_at_checkpoint", {}).get(Path(checkpoint).name, 0.0))
