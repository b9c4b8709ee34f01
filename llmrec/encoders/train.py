"""Training sequential encoders into a run directory, with early stopping, checkpoints and exact resume.

A run directory holds ``config.yaml`` (the full resolved config), ``checkpoints/last.pt`` (everything needed
to continue: weights, optimizer, epoch, early-stopping state, history; rewritten atomically after every epoch),
``checkpoints/best/`` (the best encoder by validation NDCG@10, as ``encoder.json`` + ``model.safetensors``),
``metrics.json`` and ``log.jsonl`` (one line per epoch).

Determinism: all randomness of epoch ``e`` (shuffling, dropout, negatives, masking) is seeded from
``(seed, e)``, so a run resumed from its last checkpoint after a crash, even a SIGKILL mid-epoch, ends
with the same weights as an uninterrupted one.

Multi-process data parallelism goes through accelerate: ``accelerate launch --multi_gpu --num_processes 2 -m
llmrec encoder train ...`` runs the same loop with DDP; each process takes every other batch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from llmrec import __version__
from llmrec.configs import resolve_threads
from llmrec.data.builtin import load_dataset
from llmrec.data.dataset import Dataset
from llmrec.data.splits import Split, leave_one_out_split
from llmrec.encoders.base import Batch, Encoder, build_encoder, load_encoder, make_config, save_encoder
from llmrec.encoders.windows import training_windows
from llmrec.errors import LlmrecError
from llmrec.eval.protocols import evaluate
from llmrec.progress import progress_bar

RUN_FORMAT = 2  # 2: GRU4Rec without GRU biases, its windows max_len + stride - 1 long; BERT4Rec stride 5


@dataclass
class TrainConfig:
    """How an encoder is trained.

    Optimisation: ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``grad_clip``. Examples: ``stride``.
    Early stopping: ``patience``, ``valid_metric``, ``mask_history``. Reproducibility and speed: ``seed``,
    ``threads``, ``eval_batch_size``.
    """

    epochs: int = field(default=200, metadata={"help": "Upper bound on epochs; early stopping usually ends sooner."})
    batch_size: int = field(
        default=128,
        metadata={
            "help": "Training windows per batch (over all processes); a batch of users' earliest windows, which "
            "train every position, holds fewer windows but about as many targets."
        },
    )
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    grad_clip: float = field(default=5.0, metadata={"help": "Clip the gradient norm to this (0: no clipping)."})
    stride: int = field(
        default=0,
        metadata={
            "help": "Positions between training windows; each target sees >= max_len - stride + 1 items of "
            "history (0: max_len // 25 for next-item models, i.e. 2 for max_len 50, and max_len // 10 for cloze). "
            "A recurrent model's windows are max_len + stride - 1 long, so each target sees >= max_len items."
        },
    )
    patience: int = field(default=10, metadata={"help": "Stop after this many epochs without a better valid metric."})
    valid_metric: str = field(default="ndcg@10", metadata={"help": "Validation metric (full ranking) to maximise."})
    mask_history: bool = field(default=False, metadata={"help": "Mask history items when ranking (full protocol)."})
    seed: int = field(default=42, metadata={"help": "Seed of every random draw."})
    threads: int = field(
        default=0,
        metadata={"help": "torch CPU threads per process (0: the cores it may use, shared by the processes)."},
    )
    eval_batch_size: int = field(default=512, metadata={"help": "Users per evaluation batch."})

    def __post_init__(self) -> None:
        metric, _, k = self.valid_metric.partition("@")
        if metric not in ("hr", "ndcg", "mrr") or k not in ("1", "5", "10", "20"):
            raise LlmrecError(
                f"valid_metric {self.valid_metric!r}: use hr, ndcg or mrr at 1, 5, 10 or 20 (e.g. ndcg@10)"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1 or self.lr <= 0:
            raise LlmrecError("epochs, batch_size and patience must be at least 1 and lr positive")


@dataclass
class RunConfig:
    """Everything a run was made from; saved as ``config.yaml`` and enough to resume or re-evaluate it."""

    model: str
    dataset: str
    encoder: dict[str, Any]
    train: dict[str, Any]
    split: dict[str, Any]
    dataset_fingerprint: str = ""
    num_items: int = 0
    llmrec_version: str = __version__
    run_format: int = RUN_FORMAT


def load_run_config(run: Path) -> RunConfig:
    """Read a run directory's ``config.yaml``, rejecting runs of another format."""
    file = Path(run) / "config.yaml"
    if not file.exists():
        raise LlmrecError(f"{run}: not a run directory (no config.yaml)")
    try:
        values = yaml.safe_load(file.read_text())
        config = RunConfig(**values)
    except (yaml.YAMLError, TypeError) as err:
        raise LlmrecError(f"{file}: unreadable run config ({err}); it may come from another llmrec version") from None
    if config.run_format != RUN_FORMAT:
        raise LlmrecError(f"{file}: run format {config.run_format} is not {RUN_FORMAT}; retrain with this version")
    return config


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _write_log(path: Path, history: list[dict[str, Any]]) -> None:
    lines = [
        json.dumps(
            {k: entry[k] for k in ("epoch", "loss", "seconds")}
            | {f"valid_{k}": v for k, v in entry["valid"].items() if "@" in k}
        )
        for entry in history
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, path)


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def epoch_batches(pools: list[np.ndarray], sizes: list[int], generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches of window indices: each pool shuffled and cut into batches of its size, then all
    batches shuffled.

    >>> batches = epoch_batches([np.arange(5), np.arange(5, 8)], [2, 2], torch.Generator().manual_seed(0))
    >>> sorted(len(b) for b in batches), all(max(b) < 5 or min(b) >= 5 for b in batches)
    ([1, 1, 2, 2, 2], True)
    >>> len(epoch_batches([np.arange(3), np.arange(0)], [2, 2], torch.Generator()))
    2
    """
    batches = []
    for pool, size in zip(pools, sizes, strict=True):
        if not len(pool):
            continue
        shuffled = torch.from_numpy(pool)[torch.randperm(len(pool), generator=generator)]
        batches.extend(shuffled.split(size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def pool_batch_sizes(pools: list[np.ndarray], targets: np.ndarray, batch_size: int) -> list[int]:
    """Windows per batch of each pool, so that every batch trains about as many targets: ``batch_size`` for the
    pool with the fewest targets per window, proportionally fewer windows for the others.

    The loss is a mean over a batch's targets, so a batch of users' earliest windows (a target at every position)
    would otherwise weigh each of its targets dozens of times less than a batch of windows training their
    newest ``stride`` positions. On ML-100K at stride 1 the earliest windows hold 40% of all targets.

    >>> targets = np.array([[0, 0, 7], [0, 0, 3], [4, 5, 6], [1, 2, 3]])
    >>> pool_batch_sizes([np.array([0, 1]), np.array([2, 3])], targets, 6)
    [6, 2]
    """
    per_window = [float((targets[pool] > 0).sum(1).mean()) if len(pool) else 0.0 for pool in pools]
    fewest = min((w for w in per_window if w > 0), default=1.0)
    return [max(1, round(batch_size * fewest / w)) if w > 0 else batch_size for w in per_window]


def training_layout(model: Encoder, stride: int = 0) -> tuple[int, int]:
    """``(stride, window)`` of ``model``'s training windows for the configured ``stride`` (0: the default).

    A causal model learns each target once per window, so its windows are dense (default stride ``max_len //
    25``, each target seeing at least ``max_len - stride + 1`` items). Cloze windows are extra masking draws of the
    same items (default stride ``max_len // 10``: with half-overlapping windows, BERT4Rec was still learning
    after 80 epochs of ML-100K and stayed below its validation score at stride 5). A model that reads any
    length (GRU4Rec) takes windows of ``max_len + stride - 1`` positions, so that every target sees at least
    ``max_len`` items whatever the stride.
    """
    max_len = model.config.max_len
    stride = stride or max(1, max_len // (25 if model.objective == "next" else 10))
    if model.objective == "next" and model.any_length:
        return stride, max_len + stride - 1
    return stride, max_len


def evaluate_encoder(
    model: Encoder,
    split: Split,
    which: str,
    dataset: Dataset,
    protocol: str = "full",
    mask_history: bool = False,
    batch_size: int = 512,
) -> dict[str, Any]:
    """Evaluate ``model`` on the ``valid`` or ``test`` examples of ``split`` under ``protocol``."""
    was_training = model.training
    model.eval()
    try:
        return evaluate(
            model.score,
            split,
            which,
            num_items=dataset.num_items,
            max_len=model.config.max_len,
            protocol=protocol,
            mask_history=mask_history,
            batch_size=batch_size,
            cache_dir=dataset.path / "splits",
        )
    finally:
        model.train(was_training)


class Trainer:
    """Trains one encoder on one dataset split into one run directory."""

    def __init__(self, run: Path, config: RunConfig, dataset: Dataset, split: Split) -> None:
        from accelerate import Accelerator

        self.run = Path(run)
        self.config = config
        self.train_config = TrainConfig(**config.train)
        self.dataset = dataset
        self.split = split
        self.accelerator = Accelerator(cpu=True)
        threads = resolve_threads(self.train_config.threads, self.accelerator.num_processes)
        torch.set_num_threads(threads)
        _seed_everything(self.train_config.seed)
        self.model = build_encoder(config.model, dataset.num_items, config.encoder)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train until early stopping or the epoch limit, then evaluate the best checkpoint on valid and test."""
        if not self.model.trainable:
            return self._fit_untrained()
        tc = self.train_config
        stride, window = training_layout(self.model, tc.stride)
        inputs, targets = training_windows(self.split.train_sequences(), window, stride, self.model.objective)
        inputs_t, targets_t = torch.from_numpy(inputs), torch.from_numpy(targets)
        # Windows that train only their last ``stride`` positions are batched apart from the earliest windows of
        # each user (targets everywhere), so most batches need the last layer's outputs at a few positions only.
        spans = window - (targets > 0).argmax(1)
        pools = [np.flatnonzero(spans <= stride), np.flatnonzero(spans > stride)]
        if self.model.objective != "next":
            pools = [np.arange(len(inputs))]
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        state = {"epoch": 0, "best": -math.inf, "best_epoch": 0, "bad_epochs": 0, "history": []}
        checkpoint = self.run / "checkpoints" / "last.pt"
        if resume:
            saved = self._load_checkpoint(checkpoint)
            self.model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            state = saved["state"]
            if state.get("finished"):
                raise LlmrecError(f"{self.run}: this run already finished (epoch {state['epoch']}); nothing to resume")
            print(f"llmrec: resuming {self.run} after epoch {state['epoch']}", file=sys.stderr)
        model, optimizer = self.accelerator.prepare(self.model, optimizer)
        processes, rank = self.accelerator.num_processes, self.accelerator.process_index
        sizes = pool_batch_sizes(pools, targets, tc.batch_size)
        num_batches = sum(math.ceil(len(pool) / size) for pool, size in zip(pools, sizes, strict=True))
        num_batches -= num_batches % processes
        started = time.perf_counter() - sum(h["seconds"] for h in state["history"])
        last_metric = state["history"][-1]["valid"][tc.valid_metric] if state["history"] else float("nan")
        for epoch in range(state["epoch"] + 1, tc.epochs + 1):
            epoch_start = time.perf_counter()
            seed = _epoch_seed(tc.seed, epoch)
            torch.manual_seed(seed + rank)
            generator = torch.Generator().manual_seed(seed)
            batches = epoch_batches(pools, sizes, generator)
            model.train()
            total, count = 0.0, 0
            bar = progress_bar(num_batches // processes, f"{self.config.model} epoch {epoch}", unit="batch")
            bar.disable = bar.disable or not self.is_main
            for b in range(rank, num_batches, processes):
                index = batches[b]
                batch = self._batch(inputs_t[index], targets_t[index], generator)
                loss = model(batch)
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
            valid = evaluate_encoder(
                self.model,
                self.split,
                "valid",
                self.dataset,
                mask_history=tc.mask_history,
                batch_size=tc.eval_batch_size,
            )
            last_metric = valid[tc.valid_metric]
            seconds = time.perf_counter() - epoch_start
            entry = {"epoch": epoch, "loss": total / max(count, 1), "valid": valid, "seconds": seconds}
            state["history"].append(entry)
            state["epoch"] = epoch
            improved = last_metric > state["best"]
            if improved:
                state.update(best=last_metric, best_epoch=epoch, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            done = state["bad_epochs"] >= tc.patience or epoch == tc.epochs
            state["finished"] = done
            if self.is_main:
                if improved:
                    self._save_best()
                # Rewritten whole from the checkpointed history, so a resumed run never repeats or loses a line.
                _write_log(self.run / "log.jsonl", state["history"])
                _atomic_torch_save(
                    {"model": self.model.state_dict(), "optimizer": optimizer.state_dict(), "state": state},
                    checkpoint,
                )
                print(
                    f"llmrec: epoch {epoch} loss {entry['loss']:.4f} valid {tc.valid_metric} {last_metric:.4f}"
                    f"{' (best)' if improved else ''} [{seconds:.1f}s]",
                    file=sys.stderr,
                )
            self.accelerator.wait_for_everyone()
            if done:
                break
        wall = time.perf_counter() - started
        return self._finish(state, wall)

    def _batch(self, inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> Batch:
        config = self.model.config
        negatives = None
        if config.loss != "ce":
            count = 1 if config.loss == "bce" else config.num_negatives
            negatives = torch.randint(1, self.dataset.num_items + 1, (*targets.shape, count), generator=generator)
        return Batch(inputs, targets, negatives, generator)

    def _load_checkpoint(self, path: Path) -> dict[str, Any]:
        if not path.exists():
            raise LlmrecError(f"{self.run}: no checkpoint to resume from ({path} is missing); start without --resume")
        try:
            return torch.load(path, weights_only=False)
        except Exception as err:  # noqa: BLE001 - torch raises many types for a damaged file
            raise LlmrecError(
                f"{path}: corrupted checkpoint ({type(err).__name__}); delete the run and retrain"
            ) from None

    def _save_best(self) -> None:
        best = self.run / "checkpoints" / "best"
        tmp = self.run / "checkpoints" / "best.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        save_encoder(self.model, tmp)
        shutil.rmtree(best, ignore_errors=True)
        os.replace(tmp, best)

    def _fit_untrained(self) -> dict[str, Any]:
        self.model.fit(self.split.train_sequences())
        if self.is_main:
            self._save_best()
        state = {"epoch": 0, "best_epoch": 0, "history": [], "finished": True}
        return self._finish(state, 0.0)

    def _finish(self, state: dict[str, Any], wall: float) -> dict[str, Any]:
        best = load_encoder(self.run / "checkpoints" / "best")
        tc = self.train_config
        metrics: dict[str, Any] = {
            "model": self.config.model,
            "dataset": self.dataset.name,
            "epochs": state["epoch"],
            "best_epoch": state["best_epoch"],
            "seconds_per_epoch": float(np.mean([h["seconds"] for h in state["history"]])) if state["history"] else 0.0,
            "wall_seconds": wall,
            "processes": self.accelerator.num_processes,
            "valid": evaluate_encoder(best, self.split, "valid", self.dataset, mask_history=tc.mask_history),
            "test": evaluate_encoder(best, self.split, "test", self.dataset, mask_history=tc.mask_history),
        }
        if self.is_main:
            _write_json(self.run / "metrics.json", metrics)
        return metrics


def prepare_run(
    run: Path,
    model: str,
    dataset_name: str,
    encoder_values: dict[str, Any] | None = None,
    train_values: dict[str, Any] | None = None,
    resume: bool = False,
) -> tuple[RunConfig, Dataset, Split]:
    """Resolve and validate the run config, load data and split; writes ``config.yaml`` for a new run."""
    run = Path(run)
    main = int(os.environ.get("RANK", "0")) == 0  # data parallel: only the first process writes the run directory
    if resume:
        config = load_run_config(run)
        data = load_dataset(config.dataset)
    else:
        if main and (run / "config.yaml").exists():  # the other processes may find the one the first just wrote
            raise LlmrecError(
                f"{run}: a run already exists here; pass --resume to continue it or choose another --out"
            )
        encoder_config = make_config(model, encoder_values)
        train_config = TrainConfig(**(train_values or {}))
        data = load_dataset(dataset_name)
        config = RunConfig(
            model=model,
            dataset=str(data.path) if str(dataset_name) != data.name else dataset_name,
            encoder=asdict(encoder_config),
            train=asdict(train_config),
            split={"kind": "leave-one-out", "min_len": 3},
            num_items=data.num_items,
        )
    split = leave_one_out_split(data, min_len=config.split.get("min_len", 3))
    if config.dataset_fingerprint and config.dataset_fingerprint != split.fingerprint():
        raise LlmrecError(f"{run}: the dataset changed since this run started (split fingerprint differs)")
    config.dataset_fingerprint = split.fingerprint()
    short = split.not_evaluated.get("too_short", 0)
    if short:
        lengths = np.array([len(s) for s in split.sequences])
        examples = np.flatnonzero((lengths > 0) & (lengths < 3))[:5]
        raw = data.users.set_index("user_id").loc[examples, "raw_id"].tolist()
        print(
            f"llmrec: {short:,} users have fewer than 3 interactions (e.g. {', '.join(map(str, raw))}); leave-one-out "
            "cannot evaluate them, so they are only trained on",
            file=sys.stderr,
        )
    if not resume and main:
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text(yaml.safe_dump(asdict(config), sort_keys=False))
    return config, data, split


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
