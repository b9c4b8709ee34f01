"""Recipes: one YAML file naming everything an LLM-recommender run is made of.

A recipe (``adapters/*.yaml``) has the top-level keys ``base_model``, ``dataset``, ``encoder`` (an encoder run
directory), ``representation`` (``none`` for text-only prompts, or ``id``, ``text``, ``hybrid`` item vectors),
``embedder``, ``device`` (``auto``, ``cpu`` or ``cuda``), and the sections ``projector``
(:class:`llmrec.adapters.ProjectorConfig`), ``lora`` (the fields of PEFT's ``LoraConfig``, by name), ``task``
(:class:`llmrec.adapters.tasks.TaskConfig`), ``curriculum`` (:class:`CurriculumSettings`) and ``trainer`` (the
fields of :class:`llmrec.training.config.RecSFTConfig`, TRL's ``SFTConfig`` with llmrec's additions, by name).
Unknown keys are errors that name the known ones; :func:`llmrec.training.sft.prepare` finds every other mistake it
can before training starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from llmrec.adapters.projectors import ProjectorConfig
from llmrec.adapters.task_config import TaskConfig
from llmrec.configs import config_from_dict
from llmrec.devices import DEVICES
from llmrec.errors import LlmrecError

REPRESENTATIONS = ("none", "id", "text", "hybrid")
CURRICULA = ("none", "llara", "rsllm")
# PEFT LoraConfig fields a recipe starts from; the section's own values replace them.
LORA_DEFAULTS: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
LORA_MANAGED = ("task_type", "base_model_name_or_path")


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


@dataclass
class Recipe:
    """Everything an LLM-recommender run is made of (see the module docstring for the YAML layout)."""

    base_model: str | None = None
    dataset: str = "ml-100k"
    encoder: str | None = None
    representation: str = "id"
    embedder: str | None = None
    device: str = "auto"
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lora: dict[str, Any] = field(default_factory=dict)
    task: TaskConfig = field(default_factory=TaskConfig)
    curriculum: CurriculumSettings = field(default_factory=CurriculumSettings)
    trainer: dict[str, Any] = field(default_factory=dict)
    min_len: int = 3

    def __post_init__(self) -> None:
        if self.representation not in REPRESENTATIONS:
            raise LlmrecError(
                f"representation must be one of {', '.join(REPRESENTATIONS)}, got {self.representation!r}"
            )
        if self.device not in DEVICES:
            raise LlmrecError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        self.lora = {**LORA_DEFAULTS, **self.lora}
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
        if self.task.user_vector and self.representation != "id":
            raise LlmrecError(
                f"task user_vector needs representation 'id' (the encoder's user state lives in the space of its "
                f"item embeddings), not {self.representation!r}"
            )
        if self.task.prior and self.curriculum.kind != "none":
            raise LlmrecError(
                f"task prior adds the encoder's own score to every training row's, but the {self.curriculum.kind!r} "
                "curriculum's text-only rows carry no user state: set curriculum kind 'none'"
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

    def lora_config(self) -> Any:
        """PEFT's ``LoraConfig`` of the ``lora`` section (a causal-LM adapter)."""
        from peft import LoraConfig

        try:
            return LoraConfig(**self.lora, task_type="CAUSAL_LM")
        except (TypeError, ValueError) as error:
            raise LlmrecError(f"recipe lora: {str(error).splitlines()[0]}") from None


SECTIONS = {"projector": ProjectorConfig, "task": TaskConfig, "curriculum": CurriculumSettings}


def _lora_fields() -> set[str]:
    from peft import LoraConfig

    return {f.name for f in fields(LoraConfig) if f.init} - set(LORA_MANAGED)


def check_lora_section(lora: dict[str, Any], where: str) -> None:
    """Raise unless every key of a recipe's ``lora`` section is a field of PEFT's ``LoraConfig``."""
    unknown = sorted(set(lora) - _lora_fields())
    if unknown:
        raise LlmrecError(
            f"{where}: lora: unknown field(s) {', '.join(unknown)}; the section takes the fields of PEFT's "
            "LoraConfig (e.g. r, lora_alpha, lora_dropout, target_modules)"
        )


def recipe_from_dict(values: dict[str, Any], where: str = "recipe") -> Recipe:
    """A :class:`Recipe` from plain data; unknown keys (top level or in a section) are errors naming ``where``."""
    from llmrec.training.config import RecSFTConfig, check_section

    if not isinstance(values, dict):
        raise LlmrecError(f"{where}: a recipe is a mapping of keys to values, got {type(values).__name__}")
    values = dict(values)
    if "rewards" in values:
        raise LlmrecError(f"{where}: an RL recipe (it names rewards); train it with `llmrec rl`, not `llmrec sft`")
    known = {f.name for f in fields(Recipe)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise LlmrecError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    for name in (*SECTIONS, "lora", "trainer"):
        section = values.get(name) or {}
        if not isinstance(section, dict):
            raise LlmrecError(f"{where}: {name} must be a mapping, got {type(section).__name__}")
        values[name] = section
    for name, cls in SECTIONS.items():
        try:
            values[name] = config_from_dict(cls, values[name], f"{where}: {name}")
        except TypeError as error:
            raise LlmrecError(f"{where}: {name}: {error}") from None
    check_lora_section(values["lora"], where)
    check_section(RecSFTConfig, values["trainer"], f"{where}: trainer")
    try:
        return Recipe(**values)
    except TypeError as error:
        raise LlmrecError(f"{where}: {error}") from None


def read_recipe(
    path: Path | str, overrides: dict[str, Any] | None = None, trainer: dict[str, Any] | None = None
) -> tuple[Any, Path]:
    """A recipe file's plain data (a file, or a shipped recipe by name) and its path; ``overrides`` (top-level
    keys, e.g. from command-line flags) replace its values, and ``trainer`` its trainer section's fields."""
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
        if trainer:
            section = values.get("trainer")
            values["trainer"] = {**(section if isinstance(section, dict) else {}), **trainer}
    return values, path


def load_recipe(
    path: Path | str, overrides: dict[str, Any] | None = None, trainer: dict[str, Any] | None = None
) -> Recipe:
    """Read a recipe YAML file, or a shipped recipe by name (``smollm2-sasrec-mlp``); ``overrides`` (top-level
    keys, e.g. from command-line flags) replace its values, and ``trainer`` its trainer section's fields."""
    values, path = read_recipe(path, overrides, trainer)
    return recipe_from_dict(values, str(path))
