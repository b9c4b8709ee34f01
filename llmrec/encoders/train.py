"""Training sequential encoders into a run directory, with early stopping, checkpoints and exact resume.

The run directory (:mod:`llmrec.encoders.run`) gets ``checkpoints/last.pt`` (everything needed to continue:
weights, optimizer, epoch, early-stopping state, history; rewritten atomically after every epoch),
``checkpoints/best/`` (the best encoder by validation NDCG@10), ``metrics.json`` and ``log.jsonl``.

Determinism: all randomness of epoch ``e`` (shuffling, dropout, negatives, masking) is seeded from
``(seed, e)``, so a run resumed from its last checkpoint after a crash, even a SIGKILL mid-epoch, ends
with the same weights as an uninterrupted one.

Multi-process data parallelism goes through accelerate: ``accelerate launch --multi_gpu --num_processes 2 -m
llmrec encoder train ...`` runs the same loop with DDP; each process takes every other batch. ``device`` (in the
``train`` settings) picks the CPU or a GPU.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.configs import resolve_threads
from llmrec.data.dataset import Dataset
from llmrec.data.splits import Split
from llmrec.devices import resolve_device
from llmrec.encoders.base import Batch, build_encoder, save_encoder
from llmrec.encoders.batching import epoch_batches, pool_batch_sizes, training_layout, window_pools
from llmrec.encoders.run import RunConfig, TrainConfig, evaluate_encoder, load_best, prepare_run
from llmrec.encoders.windows import training_windows
from llmrec.errors import LlmrecError
from llmrec.progress import progress_bar
from llmrec.runs import atomic_write, best_checkpoint, last_checkpoint, update_metrics, write_log


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


@dataclass
class TrainState:
    """Where training stands: the last finished epoch, early stopping, and every epoch's figures."""

    epoch: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False


@dataclass
class Windows:
    """One epoch's material: training windows, their pools and each pool's batch size."""

    inputs: torch.Tensor
    targets: torch.Tensor
    pools: list[np.ndarray]
    sizes: list[int]

    @property
    def num_batches(self) -> int:
        return sum(math.ceil(len(pool) / size) for pool, size in zip(self.pools, self.sizes, strict=True))


class Trainer:
    """Trains one encoder on one dataset split into one run directory."""

    def __init__(self, run: Path, config: RunConfig, dataset: Dataset, split: Split) -> None:
        from accelerate import Accelerator

        self.run = Path(run)
        self.config = config
        self.train_config = TrainConfig(**config.train)
        self.dataset = dataset
        self.split = split
        self.accelerator = Accelerator(cpu=resolve_device(self.train_config.device) == "cpu")
        torch.set_num_threads(resolve_threads(self.train_config.threads, self.accelerator.num_processes))
        torch.manual_seed(self.train_config.seed)
        np.random.seed(self.train_config.seed % 2**32)
        self.model = build_encoder(config.model, dataset.num_items, config.encoder)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train until early stopping or the epoch limit, then evaluate the best checkpoint on valid and test."""
        if not self.model.trainable:
            return self._fit_untrained()
        tc = self.train_config
        windows = self._windows()
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        state = self._resume(optimizer) if resume else TrainState()
        model, optimizer = self.accelerator.prepare(self.model, optimizer)
        started = time.perf_counter() - sum(h["seconds"] for h in state.history)
        for epoch in range(state.epoch + 1, tc.epochs + 1):
            epoch_start = time.perf_counter()
            loss = self._train_epoch(model, optimizer, windows, epoch, state)
            valid = self._evaluate(self.model, "valid", tc.eval_batch_size)
            self._end_epoch(state, optimizer, epoch, loss, valid, time.perf_counter() - epoch_start)
            self.accelerator.wait_for_everyone()
            if state.finished:
                break
        return self._finish(state, time.perf_counter() - started, windows)

    def _windows(self) -> Windows:
        stride, window = training_layout(self.model, self.train_config.stride)
        inputs, targets = training_windows(self._sequences(), window, stride, self.model.objective)
        pools = window_pools(targets, stride, self.model.objective)
        sizes = pool_batch_sizes(pools, targets, self.train_config.batch_size)
        return Windows(torch.from_numpy(inputs), torch.from_numpy(targets), pools, sizes)

    def _sequences(self) -> list[np.ndarray]:
        """Each user's training prefix, without its last ``holdout`` items (one item always stays)."""
        cut = self.train_config.holdout
        sequences = self.split.train_sequences()
        return [seq[: max(len(seq) - cut, 1)] for seq in sequences] if cut else sequences

    def _train_epoch(
        self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, windows: Windows, epoch: int, state: TrainState
    ) -> float:
        """One epoch over this process's share of the batches; the mean training loss."""
        tc = self.train_config
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        num_batches = windows.num_batches - windows.num_batches % processes
        seed = _epoch_seed(tc.seed, epoch)
        torch.manual_seed(seed + rank)
        generator = torch.Generator().manual_seed(seed)
        batches = epoch_batches(windows.pools, windows.sizes, generator)
        last_metric = state.history[-1]["valid"][tc.valid_metric] if state.history else float("nan")
        model.train()
        total, count = 0.0, 0
        bar = progress_bar(num_batches // processes, f"{self.config.model} epoch {epoch}", unit="batch")
        bar.disable = bar.disable or not self.is_main
        for b in range(rank, num_batches, processes):
            index = batches[b]
            loss = model(self._batch(windows.inputs[index], windows.targets[index], generator))
            optimizer.zero_grad(set_to_none=True)
            self.accelerator.backward(loss)
            if tc.grad_clip > 0:
                self.accelerator.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            total += float(loss.detach())
            count += 1
            bar.update(1)
            if count % 20 == 0:
                bar.set_postfix(loss=f"{total / count:.4f}", valid=f"{last_metric:.4f}")
        bar.close()
        if not math.isfinite(total):
            raise LlmrecError(f"training diverged at epoch {epoch} (loss {total}); lower --lr or check the data")
        return total / max(count, 1)

    def _end_epoch(
        self,
        state: TrainState,
        optimizer: torch.optim.Optimizer,
        epoch: int,
        loss: float,
        valid: dict[str, Any],
        seconds: float,
    ) -> None:
        """Early stopping's bookkeeping, then (main process) the best encoder, the log and the checkpoint."""
        tc = self.train_config
        metric = valid[tc.valid_metric]
        state.history.append({"epoch": epoch, "loss": loss, "valid": valid, "seconds": seconds})
        state.epoch = epoch
        improved = metric > state.best
        if improved:
            state.best, state.best_epoch, state.bad_epochs = metric, epoch, 0
        else:
            state.bad_epochs += 1
        state.finished = state.bad_epochs >= tc.patience or epoch == tc.epochs
        if not self.is_main:
            return
        if improved:
            self._save_best()
        # Rewritten whole from the checkpointed history, so a resumed run never repeats or loses a line.
        write_log(self.run, [_log_line(entry) for entry in state.history])
        checkpoint = {"model": self.model.state_dict(), "optimizer": optimizer.state_dict(), "state": vars(state)}
        atomic_write(last_checkpoint(self.run), lambda tmp: torch.save(checkpoint, tmp))
        print(
            f"llmrec: epoch {epoch} loss {loss:.4f} valid {tc.valid_metric} {metric:.4f}"
            f"{' (best)' if improved else ''} [{seconds:.1f}s]",
            file=sys.stderr,
        )

    def _evaluate(self, model: torch.nn.Module, which: str, batch_size: int = 512) -> dict[str, Any]:
        mask = self.train_config.mask_history
        return evaluate_encoder(model, self.split, which, self.dataset, mask_history=mask, batch_size=batch_size)

    def _batch(self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> Batch:
        config = self.model.config
        negatives = None
        if config.loss != "ce":
            count = 1 if config.loss == "bce" else config.num_negatives
            negatives = torch.randint(1, self.dataset.num_items + 1, (*targets.shape, count), generator=generator)
            negatives = negatives.to(self.accelerator.device)
        device = self.accelerator.device
        return Batch(inputs.to(device), targets.to(device), negatives, generator)

    def _resume(self, optimizer: torch.optim.Optimizer) -> TrainState:
        path = last_checkpoint(self.run)
        if not path.exists():
            raise LlmrecError(f"{self.run}: no checkpoint to resume from ({path} is missing); start without --resume")
        try:
            saved = torch.load(path, weights_only=False, map_location="cpu")
        except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
            raise LlmrecError(
                f"{path}: corrupted checkpoint ({type(err).__name__}); delete the run and retrain"
            ) from None
        self.model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        state = TrainState(**saved["state"])
        if state.finished:
            raise LlmrecError(f"{self.run}: this run already finished (epoch {state.epoch}); nothing to resume")
        print(f"llmrec: resuming {self.run} after epoch {state.epoch}", file=sys.stderr)
        return state

    def _save_best(self) -> None:
        best = best_checkpoint(self.run)
        tmp = best.with_name("best.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_encoder(self.model, tmp)
        shutil.rmtree(best, ignore_errors=True)
        tmp.rename(best)

    def _fit_untrained(self) -> dict[str, Any]:
        self.model.fit(self._sequences())
        if self.is_main:
            self._save_best()
        return self._finish(TrainState(finished=True), 0.0)

    def _finish(self, state: TrainState, wall: float, windows: Windows | None = None) -> dict[str, Any]:
        best = load_best(self.run).to(self.accelerator.device)
        metrics: dict[str, Any] = {
            "model": self.config.model,
            "dataset": self.dataset.name,
            "epochs": state.epoch,
            "best_epoch": state.best_epoch,
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in state.history])) if state.history else 0.0,
            "wall_seconds": wall,
            "processes": self.accelerator.num_processes,
            "device": str(self.accelerator.device),
            "valid": self._evaluate(best, "valid"),
            "test": self._evaluate(best, "test"),
        }
        if windows is not None:  # what one epoch trains on: windows, the targets with a loss, batches
            metrics["train_examples"] = {
                "windows": len(windows.targets),
                "targets": int((windows.targets > 0).sum()),
                "batches": windows.num_batches,
            }
        if self.is_main:
            update_metrics(self.run, metrics)
        return metrics


def _log_line(entry: dict[str, Any]) -> dict[str, Any]:
    line = {k: entry[k] for k in ("epoch", "loss", "seconds")}
    return line | {f"valid_{k}": v for k, v in entry["valid"].items() if "@" in k}


def train_encoder(
    run: Path,
    model: str = "sasrec",
    dataset: str = "ml-100k",
    encoder: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train (or resume) an encoder run and return its ``metrics.json`` content."""
    config, data, split = prepare_run(Path(run), model, dataset, encoder, train, resume)
    return Trainer(Path(run), config, data, split).fit(resume=resume)
