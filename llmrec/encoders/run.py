"""An encoder run directory: its config, how it is read back and checked, and its best encoder.

``config.yaml`` holds a :class:`RunConfig` (model, dataset, the encoder and training settings, the split and its
fingerprint) and the ``run`` section of :mod:`llmrec.runs`; ``checkpoints/best/`` holds the best encoder by
validation, ``checkpoints/last.pt`` what the trainer needs to continue, ``metrics.json`` and ``log.jsonl`` the
figures. Everything here is what evaluating, serving or reusing a run needs; training is in
:mod:`llmrec.encoders.train`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.configs import config_from_dict
from llmrec.data.builtin import load_dataset
from llmrec.data.dataset import Dataset
from llmrec.data.splits import Split, leave_one_out_split
from llmrec.devices import DEVICES
from llmrec.encoders.base import Encoder, load_encoder, make_config
from llmrec.errors import LlmrecError
from llmrec.ranking.protocols import evaluate
from llmrec.runs import best_checkpoint, config_file, read_config, write_config

KIND = "encoder"


@dataclass
class TrainConfig:
    """How an encoder is trained.

    Optimisation: ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``grad_clip``. Examples: ``stride``,
    ``holdout``.
    Early stopping: ``patience``, ``valid_metric``, ``mask_history``. Reproducibility and speed: ``seed``,
    ``threads``, ``eval_batch_size``, ``device``.
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
    holdout: int = field(
        default=0,
        metadata={
            "help": "Leave each user's last N training items out of the encoder's training (at least one item "
            "stays). A model stacked on the encoder (an LLM correcting its scores) then learns from positions the "
            "encoder has not fitted, as its validation and test targets are; history at inference is unchanged."
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
    device: str = field(default="auto", metadata={"help": "auto (a CUDA GPU when there is one), cpu or cuda."})

    def __post_init__(self) -> None:
        metric, _, k = self.valid_metric.partition("@")
        if metric not in ("hr", "ndcg", "mrr") or k not in ("1", "5", "10", "20"):
            raise LlmrecError(
                f"valid_metric {self.valid_metric!r}: use hr, ndcg or mrr at 1, 5, 10 or 20 (e.g. ndcg@10)"
            )
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1 or self.lr <= 0:
            raise LlmrecError("epochs, batch_size and patience must be at least 1 and lr positive")
        if self.holdout < 0:
            raise LlmrecError(f"holdout must be >= 0 (items left out of each user's training), got {self.holdout}")
        if self.device not in DEVICES:
            raise LlmrecError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")


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


def load_run_config(run: Path | str) -> RunConfig:
    """Read an encoder run's ``config.yaml``, rejecting other kinds of run and runs of another format."""
    values, _ = read_config(run, (KIND,))
    try:
        return RunConfig(**values)
    except TypeError as error:
        raise LlmrecError(f"{config_file(run)}: unreadable run config ({error}); retrain the encoder") from None


def check_encoder_run(run: Path | str, dataset: Dataset) -> RunConfig:
    """The run config of encoder run ``run``, after checking that it has a best encoder and was trained on
    ``dataset`` (same item count and split fingerprint, which hashes the dataset files)."""
    run = Path(run)
    if not run.exists():
        raise LlmrecError(f"{run}: no such encoder run; train one with `llmrec encoder train --out {run}`")
    config = load_run_config(run)
    if not (best_checkpoint(run) / "encoder.json").exists():
        raise LlmrecError(
            f"{run}: the run has no best checkpoint yet; finish it with `llmrec encoder train --out {run} --resume`"
        )
    kind = config.split.get("kind")
    if kind != "leave-one-out":
        raise LlmrecError(f"{run}: split kind {kind!r} is unknown to this llmrec version; retrain the encoder")
    fingerprint = leave_one_out_split(dataset, min_len=config.split.get("min_len", 3)).fingerprint()
    if config.num_items != dataset.num_items or config.dataset_fingerprint != fingerprint:
        raise LlmrecError(
            f"{run}: encoder trained on another dataset ({config.dataset}: {config.num_items:,} items, fingerprint "
            f"{config.dataset_fingerprint}) than {dataset.path} ({dataset.num_items:,} items, fingerprint "
            f"{fingerprint}); pass the dataset it was trained on, or train an encoder on this one"
        )
    return config


def load_best(run: Path | str) -> Encoder:
    """The best encoder of a run (in eval mode); a run without one is a clear error."""
    best = best_checkpoint(run)
    if not best.exists():
        raise LlmrecError(f"{run}: no trained checkpoint yet (checkpoints/best is missing); train or --resume it")
    return load_encoder(best)


def evaluate_encoder(
    model: Encoder,
    split: Split,
    which: str,
    dataset: Dataset,
    protocol: str = "full",
    mask_history: bool = False,
    batch_size: int = 512,
    keep_ranks: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on the ``valid`` or ``test`` examples of ``split`` under ``protocol`` (on the device its
    weights are on); ``keep_ranks`` adds each user's target rank (see :func:`llmrec.ranking.protocols.evaluate`)."""
    import torch

    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")

    def score(seqs: torch.Tensor, candidates: torch.Tensor | None) -> torch.Tensor:
        return model.score(seqs.to(device), None if candidates is None else candidates.to(device))

    was_training = model.training
    model.eval()
    try:
        return evaluate(
            score,
            split,
            which,
            num_items=dataset.num_items,
            max_len=model.config.max_len,
            protocol=protocol,
            mask_history=mask_history,
            batch_size=batch_size,
            cache_dir=dataset.path / "splits",
            keep_ranks=keep_ranks,
        )
    finally:
        model.train(was_training)


def _warn_short_users(split: Split, dataset: Dataset) -> None:
    short = split.not_evaluated.get("too_short", 0)
    if not short:
        return
    lengths = np.array([len(s) for s in split.sequences])
    examples = np.flatnonzero((lengths > 0) & (lengths < 3))[:5]
    raw = dataset.users.set_index("user_id").loc[examples, "raw_id"].tolist()
    print(
        f"llmrec: {short:,} users have fewer than 3 interactions (e.g. {', '.join(map(str, raw))}); leave-one-out "
        "cannot evaluate them, so they are only trained on",
        file=sys.stderr,
    )


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
        if main and config_file(run).exists():  # the other processes may find the one the first just wrote
            raise LlmrecError(
                f"{run}: a run already exists here; pass --resume to continue it or choose another --out"
            )
        encoder_config = make_config(model, encoder_values)
        train_config = config_from_dict(TrainConfig, train_values, "train")
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
    _warn_short_users(split, data)
    if not resume and main:
        best_checkpoint(run).parent.mkdir(parents=True, exist_ok=True)
        write_config(run, KIND, asdict(config))
    return config, data, split
