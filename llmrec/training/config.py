"""Trainer configs: TRL's own config classes, extended only by what llmrec's recommender training adds.

A recipe's ``trainer:`` section maps onto :class:`RecSFTConfig` (``SFTConfig`` and so ``TrainingArguments``) field
by field, by name: any field can be set from the recipe (or ``--trainer KEY=VALUE``), and none is copied by hand.
A few fields llmrec sets itself, because the run directory and the training order depend on them (each config
class's ``MANAGED``). :func:`trainer_config` builds any such config class from a section: :class:`RecGRPOConfig`
(TRL's ``GRPOConfig``) for ``llmrec rl`` takes the same path.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from trl import GRPOConfig, SFTConfig

from llmrec.errors import LlmrecError

ITEM_LOSSES = ("candidates", "catalog")
VALID_METRICS = ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr@10")
# Fields llmrec sets: where checkpoints go, the device (from ``device:``), and what keeps the training order fixed
# and the rows whole (llmrec's collator tokenizes them).
MANAGED = {
    "output_dir": "the run directory's checkpoints/",
    "use_cpu": "the recipe's device: setting",
    "remove_unused_columns": "False (the collator reads every column)",
    "dataset_kwargs": "skip_prepare_dataset (llmrec's collator tokenizes the rows)",
    "train_sampling_strategy": "sequential (the training order is drawn before the first step)",
    "data_seed": "the seed",
}

C = TypeVar("C")


@dataclass
class RecSFTConfig(SFTConfig):
    """``SFTConfig`` for an LLM recommender: LoRA and projector trained jointly, the encoder frozen.

    Added fields: ``projector_learning_rate`` (the projector's AdamW rate), ``item_loss`` and ``distill`` /
    ``distill_temperature`` (the item-scored objective), ``max_examples`` (a cap on training examples),
    ``threads`` (torch CPU threads), ``validate`` / ``valid_users`` / ``valid_metric`` (each checkpoint scored
    on validation, the best one kept as the run's adapter). Defaults that differ from ``SFTConfig``'s: the
    learning rate, batch size, epochs, schedule, warm-up, checkpoint and logging interval, seed; no gradient
    checkpointing and float32 (``bf16: true`` turns mixed precision on where the device runs it).
    """

    learning_rate: float = field(default=5e-4, metadata={"help": "LoRA learning rate (AdamW)."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Examples per step and process."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Passes over the training examples."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "transformers scheduler name."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up steps, or a fraction of all steps (< 1)."})
    save_steps: float = field(default=50, metadata={"help": "Checkpoint every this many optimiser steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the latest ones)."})
    logging_steps: float = field(default=10, metadata={"help": "Log the losses every this many steps."})
    seed: int = field(default=0, metadata={"help": "Seed of the LoRA and projector init, dropout and curriculum."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations to save memory."})
    bf16: bool | None = field(default=False, metadata={"help": "bf16 mixed precision (where the device runs it)."})
    projector_learning_rate: float = field(default=1e-3, metadata={"help": "Projector learning rate (AdamW)."})
    item_loss: str = field(
        default="candidates",
        metadata={
            "help": "Task output item: cross-entropy of the target among its prompt's candidates (candidates) or "
            "against the whole catalog (catalog)."
        },
    )
    distill: float = field(
        default=0.0,
        metadata={"help": "Weight of the KL term towards the encoder's catalog distribution (0: none)."},
    )
    distill_temperature: float = field(default=1.0, metadata={"help": "Softmax temperature of the distill term."})
    MANAGED: ClassVar[dict[str, str]] = MANAGED
    max_examples: int = field(default=0, metadata={"help": "Use at most this many training examples (0: all)."})
    threads: int = field(
        default=0,
        metadata={"help": "torch CPU threads per process (0: the cores it may use, shared by the processes)."},
    )

    validate: bool = field(
        default=True,
        metadata={
            "help": "Score each checkpoint on validation (c20) and keep the best as the run's adapter; false: "
            "keep the last checkpoint."
        },
    )
    valid_users: int = field(
        default=200, metadata={"help": "Validation users scored at each checkpoint (the first N; 0: all)."}
    )
    valid_metric: str = field(
        default="ndcg@10", metadata={"help": f"Validation figure the best checkpoint is chosen by: {VALID_METRICS}."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.valid_metric not in VALID_METRICS:
            raise ValueError(f"valid_metric must be one of {', '.join(VALID_METRICS)}, got {self.valid_metric!r}")
        if self.valid_users < 0:
            raise ValueError(f"valid_users must be >= 0 (0: every validation user), got {self.valid_users}")
        if self.item_loss not in ITEM_LOSSES:
            raise ValueError(f"item_loss must be one of {', '.join(ITEM_LOSSES)}, got {self.item_loss!r}")
        if self.distill < 0 or self.distill_temperature <= 0:
            raise ValueError("distill must be >= 0 and distill_temperature positive")
        if self.projector_learning_rate <= 0 or self.max_examples < 0 or self.threads < 0:
            raise ValueError("projector_learning_rate must be positive, max_examples and threads >= 0")


GRPO_MANAGED = {
    "output_dir": "the run directory's checkpoints/",
    "use_cpu": "the recipe's device: setting",
    "remove_unused_columns": "False (the rewards read the dataset's columns)",
}


@dataclass
class RecGRPOConfig(GRPOConfig):
    """``GRPOConfig`` for RL on recommendation rewards, with a LoRA adapter on CPU-sized defaults.

    Added fields: ``max_examples`` (a cap on training prompts), ``threads`` (torch CPU threads). Defaults that
    differ from ``GRPOConfig``'s: 4 completions per prompt and 2 prompts per step, completions of at most 96
    tokens, a LoRA-sized learning rate with a constant schedule, no KL term (``beta`` 0: no reference model held
    in memory), a checkpoint every 10 steps, logging every step, seed 0, float32 without gradient checkpointing.
    """

    learning_rate: float = field(default=2e-5, metadata={"help": "LoRA learning rate (AdamW)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "transformers scheduler name."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Completions per step and process."})
    num_generations: int | None = field(default=4, metadata={"help": "Completions sampled per prompt (the group)."})
    max_completion_length: int | None = field(default=96, metadata={"help": "Most tokens per completion."})
    save_steps: float = field(default=10, metadata={"help": "Checkpoint every this many optimiser steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (the latest ones)."})
    logging_steps: float = field(default=1, metadata={"help": "Log rewards and loss every this many steps."})
    seed: int = field(default=0, metadata={"help": "Seed of the LoRA init, the prompt order and the sampling."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations to save memory."})
    bf16: bool | None = field(default=False, metadata={"help": "bf16 mixed precision (where the device runs it)."})
    max_examples: int = field(default=0, metadata={"help": "Use at most this many training prompts (0: all)."})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: the cores this process may use)."})
    MANAGED: ClassVar[dict[str, str]] = GRPO_MANAGED

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_examples < 0 or self.threads < 0:
            raise ValueError("max_examples and threads must be >= 0")


def field_names(cls: type) -> set[str]:
    """The settable fields of a config dataclass."""
    return {f.name for f in fields(cls) if f.init}


def check_section(cls: type, values: dict[str, Any], where: str) -> None:
    """Raise unless every key of ``values`` is a field of ``cls`` that llmrec does not manage itself (the class's
    ``MANAGED``)."""
    managing: dict[str, str] = getattr(cls, "MANAGED", {})
    managed = sorted(set(values) & set(managing))
    if managed:
        why = "; ".join(f"{name} is {managing[name]}" for name in managed)
        raise LlmrecError(f"{where}: {', '.join(managed)} cannot be set: {why}")
    unknown = sorted(set(values) - field_names(cls))
    if unknown:
        raise LlmrecError(
            f"{where}: unknown field(s) {', '.join(unknown)}; the section takes the fields of {cls.__name__} "
            "(see its documentation, e.g. learning_rate, per_device_train_batch_size, max_steps)"
        )


def trainer_config(cls: type[C], values: dict[str, Any], managed: dict[str, Any], where: str) -> C:
    """``cls(**values, **managed)``: a recipe's trainer section and the fields llmrec manages, with an error that
    names ``where`` and the bad field instead of a traceback."""
    check_section(cls, values, where)
    try:
        return cls(**values, **managed)
    except (TypeError, ValueError) as error:
        raise LlmrecError(f"{where}: {str(error).splitlines()[0]}") from None
