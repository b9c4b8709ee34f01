"""SFT recipes: one YAML file naming everything an LLM-recommender run is made of.

A recipe (``adapters/*.yaml``) has the top-level keys ``base_model``, ``dataset``, ``encoder`` (an encoder run
directory), ``representation`` (``none`` for text-only prompts, or ``id``, ``text``, ``hybrid`` item vectors),
``embedder``, and the sections ``projector`` (:class:`llmrec.adapters.ProjectorConfig`), ``lora``
(:class:`LoraSettings`), ``task`` (:class:`llmrec.training.tasks.TaskConfig`), ``curriculum``
(:class:`CurriculumSettings`) and ``trainer`` (:class:`TrainerSettings`). Unknown keys are errors that name the
known ones. :func:`check_recipe` finds every mistake it can before training starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from llmrec.adapters.projectors import ProjectorConfig
from llmrec.configs import config_from_dict
from llmrec.errors import LlmrecError
from llmrec.training.tasks import TaskConfig

REPRESENTATIONS = ("none", "id", "text", "hybrid")
CURRICULA = ("none", "llara", "rsllm")


@dataclass
class LoraSettings:
    """The PEFT ``LoraConfig``: rank ``r``, ``alpha``, ``dropout`` and the ``targets`` (module names)."""

    r: int = field(default=16, metadata={"help": "LoRA rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (scale = alpha / r)."})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA input."})
    targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "Names of the linear modules that get adapters."},
    )

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1 or not 0 <= self.dropout < 1 or not self.targets:
            raise LlmrecError("lora: r and alpha must be >= 1, dropout in [0, 1), and targets non-empty")


@dataclass
class CurriculumSettings:
    """How text-only and hybrid prompts are mixed over training (only with an item representation).

    ``none``: hybrid prompts throughout. ``llara`` (LLaRA's curriculum): each example is hybrid with a
    probability that rises linearly from ``start`` to ``end`` over the first ``ramp`` of training, text-only
    otherwise. ``rsllm`` (RSLLM's two stages): text-only prompts for the first ``text_fraction`` of training, then
    hybrid prompts with a contrastive loss (weight ``contrastive_weight``, temperature ``temperature``) pulling
    each projected item vector towards the LLM's embedding of the item's title and away from the other items'.
    """

    kind: str = field(default="llara", metadata={"help": "none, llara or rsllm."})
    start: float = field(default=0.0, metadata={"help": "llara: probability of a hybrid prompt at the start."})
    end: float = field(default=1.0, metadata={"help": "llara: probability of a hybrid prompt after the ramp."})
    ramp: float = field(default=0.5, metadata={"help": "llara: fraction of training over which it rises."})
    text_fraction: float = field(default=0.3, metadata={"help": "rsllm: fraction of training on text prompts."})
    contrastive_weight: float = field(default=0.1, metadata={"help": "rsllm: weight of the contrastive loss."})
    temperature: float = field(default=0.1, metadata={"help": "rsllm: temperature of the contrastive loss."})

    def __post_init__(self) -> None:
        if self.kind not in CURRICULA:
            raise LlmrecError(f"curriculum kind must be one of {', '.join(CURRICULA)}, got {self.kind!r}")
        for name in ("start", "end", "ramp", "text_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise LlmrecError(f"curriculum {name} must be in [0, 1], got {getattr(self, name)}")
        if self.contrastive_weight < 0 or self.temperature <= 0:
            raise LlmrecError("curriculum contrastive_weight must be >= 0 and temperature positive")


ITEM_LOSSES = ("candidates", "catalog")


@dataclass
class TrainerSettings:
    """Optimisation and bookkeeping of an SFT run (passed on to ``transformers.TrainingArguments``).

    ``epochs`` may be fractional; ``max_steps`` (> 0) overrides it. ``lr`` is the LoRA learning rate and
    ``projector_lr`` the projector's. A checkpoint is written every ``save_steps`` optimiser steps. ``item_loss``
    (task output item): the target's cross-entropy among its prompt's candidates, or against the whole catalog.
    ``distill`` (> 0, with ``item_loss: catalog`` and the encoder's user state in the prompt) adds that weight
    times the KL divergence from the encoder's own distribution over the catalog (its user state dotted with its
    item embeddings: the teacher) to the LLM's, both softened by ``distill_temperature`` (times its square).
    """

    epochs: float = field(default=1.0, metadata={"help": "Passes over the training examples (may be fractional)."})
    max_steps: int = field(default=0, metadata={"help": "Optimiser steps; > 0 overrides epochs."})
    batch_size: int = field(default=4, metadata={"help": "Examples per step and process."})
    grad_accum: int = field(default=1, metadata={"help": "Batches accumulated per optimiser step."})
    lr: float = field(default=5e-4, metadata={"help": "LoRA learning rate (AdamW)."})
    projector_lr: float = field(default=1e-3, metadata={"help": "Projector learning rate (AdamW)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Fraction of steps of linear warm-up."})
    scheduler: str = field(default="cosine", metadata={"help": "transformers lr_scheduler_type."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    max_examples: int = field(default=0, metadata={"help": "Use at most this many training examples (0: all)."})
    save_steps: int = field(default=50, metadata={"help": "Checkpoint every this many steps."})
    logging_steps: int = field(default=10, metadata={"help": "Log loss every this many steps."})
    seed: int = field(default=0, metadata={"help": "Seed of the model init, dropout and the curriculum's draws."})
    threads: int = field(
        default=0,
        metadata={"help": "torch CPU threads per process (0: the cores it may use, shared by the processes)."},
    )
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

    def __post_init__(self) -> None:
        if self.epochs <= 0 and self.max_steps <= 0:
            raise LlmrecError("trainer: set epochs > 0 or max_steps > 0")
        if self.batch_size < 1 or self.grad_accum < 1 or self.save_steps < 1 or self.logging_steps < 1:
            raise LlmrecError("trainer: batch_size, grad_accum, save_steps and logging_steps must be >= 1")
        if self.lr <= 0 or self.projector_lr <= 0:
            raise LlmrecError("trainer: lr and projector_lr must be positive")
        if self.item_loss not in ITEM_LOSSES:
            raise LlmrecError(f"trainer: item_loss must be one of {', '.join(ITEM_LOSSES)}, got {self.item_loss!r}")
        if self.distill < 0 or self.distill_temperature <= 0:
            raise LlmrecError("trainer: distill must be >= 0 and distill_temperature positive")


@dataclass
class Recipe:
    """Everything an SFT run is made of (see the module docstring for the YAML layout)."""

    base_model: str | None = None
    dataset: str = "ml-100k"
    encoder: str | None = None
    representation: str = "id"
    embedder: str | None = None
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    task: TaskConfig = field(default_factory=TaskConfig)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    min_len: int = 3

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise LlmrecError(
                f"representation must be one of {', '.join(REPRESENTATIONS)}, got {self.representation!r}"
            )
        # The representation decides whether items carry vectors: titles only without one; with one, hybrid
        # (``Title <item-emb>``) unless the task asks for vectors alone.
        if self.representation == "none":
            want = "title"
        else:
            want = "hybrid" if self.task.item_text == "title" else self.task.item_text
        if self.task.output == "item" and self.representation == "none":
            raise LlmrecError(
                "task output 'item' scores the candidates by their projected item vectors: choose a representation "
                "(id, text or hybrid), not 'none'"
            )
        if self.trainer.item_loss == "catalog" and self.task.output != "item":
            raise LlmrecError(f"trainer.item_loss 'catalog' is for task output item, not {self.task.output!r}")
        if self.trainer.distill > 0 and (
            self.trainer.item_loss != "catalog" or not self.task.user_vector or self.curriculum.kind != "none"
        ):
            raise LlmrecError(
                "trainer.distill learns the encoder's own catalog scores, which need item_loss 'catalog' and the "
                "encoder's user state in every prompt (task user_vector: true, curriculum none)"
            )
        if self.task.user_vector and self.representation != "id":
            raise LlmrecError(
                f"task user_vector needs representation 'id' (the encoder's user state lives in the space of its "
                f"item embeddings), not {self.representation!r}"
            )
        if self.task.item_text != want:
            self.task = config_from_dict(TaskConfig, {**asdict(self.task), "item_text": want}, "task")

    @property
    def uses_items(self) -> bool:
        """Whether prompts carry projected item vectors (any representation but ``none``)."""
        return self.representation != "none"

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (what ``config.yaml`` of a run holds)."""
        return asdict(self)


SECTIONS = {
    "projector": ProjectorConfig,
    "lora": LoraSettings,
    "task": TaskConfig,
    "curriculum": CurriculumSettings,
    "trainer": TrainerSettings,
}


def recipe_from_dict(values: dict[str, Any], where: str = "recipe") -> Recipe:
    """A :class:`Recipe` from plain data; unknown keys (top level or in a section) are errors naming ``where``."""
    if not isinstance(values, dict):
        raise LlmrecError(f"{where}: a recipe is a mapping of keys to values, got {type(values).__name__}")
    values = dict(values)
    known = {f.name for f in fields(Recipe)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise LlmrecError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    for name, cls in SECTIONS.items():
        section = values.get(name) or {}
        if not isinstance(section, dict):
            raise LlmrecError(f"{where}: {name} must be a mapping, got {type(section).__name__}")
        try:
            values[name] = config_from_dict(cls, section, f"{where}: {name}")
        except TypeError as error:
            raise LlmrecError(f"{where}: {name}: {error}") from None
    try:
        return Recipe(**values)
    except TypeError as error:
        raise LlmrecError(f"{where}: {error}") from None


def load_recipe(path: Path | str, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read a recipe YAML file, or a shipped recipe by name (``smollm2-sasrec-mlp``); ``overrides`` (top-level
    keys, e.g. from command-line flags) replace its values."""
    from llmrec.recipes import shipped_recipe, shipped_recipes

    path = Path(path)
    if not path.is_file():
        shipped = shipped_recipe(str(path))
        if shipped is None:
            raise LlmrecError(f"recipe {path} not found; shipped recipes (by name): {', '.join(shipped_recipes())}")
        path = shipped
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise LlmrecError(f"{path}{line}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if isinstance(values, dict):
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return recipe_from_dict(values, str(path))
