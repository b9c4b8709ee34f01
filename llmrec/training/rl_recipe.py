"""RL recipes: one YAML file naming everything an ``llmrec rl`` run is made of.

Top-level keys: ``base_model``, ``dataset``, ``device``, ``encoder`` (an encoder run: the candidates of ``llmrec
recommend``, and the ``encoder`` retriever), ``retriever`` (the frozen recommender of a ``query`` run: ``bm25``,
``dense`` or ``encoder``), ``grounding`` (how the answer line of a rollout is decoded: ``none``, freely;
``candidates`` or ``catalog``, through their title trie; ``format``, the structure forced and the answer one free
line, for queries), ``query_titles`` (a ``query`` task grounded to the ``catalog``: the query names up to this many
catalog titles, one per line), ``horizon`` (the user's next items after the target that count in MSRA and black-box
rewards), ``future_candidates`` (explain: put those items among a training prompt's candidates, so choosing one
can earn the MSRA reward), ``min_len``, and the sections ``task`` (:class:`llmrec.adapters.tasks.TaskConfig`:
``explain`` or ``query``, titles only), ``lora`` (PEFT ``LoraConfig`` fields; ignored with ``--init``, whose
adapter is continued), ``rewards`` (a list of ``{name, weight, <the reward's own parameters>}``, names from
:data:`REWARDS`) and ``trainer`` (the fields of :class:`llmrec.training.config.RecGRPOConfig`, TRL's
``GRPOConfig``, by name; ``reward_weights`` there instead of per-reward weights, one per reward).
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from llmrec.adapters.task_config import TaskConfig
from llmrec.configs import config_from_dict
from llmrec.devices import DEVICES
from llmrec.errors import LlmrecError
from llmrec.training import rewards as reward_module
from llmrec.training.recipe import LORA_DEFAULTS, check_lora_section, read_recipe

REWARDS: dict[str, type] = {
    "format": reward_module.FormatReward,
    "validity": reward_module.ValidityReward,
    "rank": reward_module.RankReward,
    "msra": reward_module.MSRAReward,
    "consistency": reward_module.ConsistencyReward,
    "blackbox": reward_module.BlackBoxReward,
}
ITEM_REWARDS = ("validity", "rank", "msra", "consistency")  # their answers name catalog items
GROUNDINGS = ("none", "candidates", "catalog", "format")
RL_TASKS = ("explain", "query")
# Constructor arguments the recipe's other keys fill in; a reward entry cannot set them.
SUPPLIED = {"catalog", "marker", "dataset", "retriever", "encoder_run"}


@dataclass
class RLRecipe:
    """Everything an RL run is made of (see the module docstring for the YAML layout)."""

    base_model: str | None = None
    dataset: str = "ml-100k"
    device: str = "auto"
    encoder: str | None = None
    retriever: str = "bm25"
    grounding: str = "candidates"
    query_titles: int = 1
    horizon: int = 3
    future_candidates: bool = True
    min_len: int = 3
    task: TaskConfig = field(default_factory=lambda: TaskConfig(task="explain"))
    lora: dict[str, Any] = field(default_factory=dict)
    rewards: list[dict[str, Any]] = field(default_factory=list)
    trainer: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise LlmrecError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.grounding not in GROUNDINGS:
            raise LlmrecError(f"grounding must be one of {', '.join(GROUNDINGS)}, got {self.grounding!r}")
        if self.task.task not in RL_TASKS:
            raise LlmrecError(
                f"task must be one of {', '.join(RL_TASKS)} for RL (a rationale, then an answer line), got "
                f"{self.task.task!r}"
            )
        if self.task.item_text != "title" or self.task.user_vector:
            raise LlmrecError("RL prompts show items as titles: set task item_text to title, without user_vector")
        if self.task.task == "query" and self.grounding not in ("none", "format", "catalog"):
            raise LlmrecError(
                "a query task answers with a search query: set grounding format (a free line), catalog (catalog "
                f"titles) or none, not {self.grounding!r}"
            )
        if self.query_titles < 1:
            raise LlmrecError(f"query_titles must be 1 or more, got {self.query_titles}")
        if self.query_titles > 1 and (self.task.task, self.grounding) != ("query", "catalog"):
            raise LlmrecError(
                "query_titles counts the catalog titles of a query: it needs task query with grounding catalog"
            )
        if self.horizon < 0:
            raise LlmrecError(f"horizon must be 0 or more, got {self.horizon}")
        self.lora = {**LORA_DEFAULTS, **self.lora}
        self.rewards = [_reward_entry(entry, n) for n, entry in enumerate(self.rewards)]
        if not self.rewards:
            raise LlmrecError(f"rewards: name at least one reward, from {', '.join(REWARDS)}")
        for entry in self.rewards:
            name = entry["name"]
            if self.task.task == "query" and name in ITEM_REWARDS:
                raise LlmrecError(
                    f"rewards: {name!r} scores answers that name catalog items; a query task's answer is a search "
                    "query (use format and blackbox)"
                )
            if self.task.task == "explain" and name == "blackbox":
                raise LlmrecError("rewards: 'blackbox' scores a search query; it is for task query, not explain")
            if int(entry.get("horizon", 0)) > self.horizon:
                raise LlmrecError(
                    f"rewards: {name} counts {entry['horizon']} future items but the prompts carry {self.horizon} "
                    "(the recipe's horizon); raise horizon or lower the reward's"
                )
        self._check_weights()

    def _check_weights(self) -> None:
        weighted = [e["name"] for e in self.rewards if "weight" in e]
        given = self.trainer.get("reward_weights")
        if given is None:
            return
        if weighted:
            raise LlmrecError(
                f"rewards {', '.join(weighted)} carry a weight and trainer.reward_weights is set too; give the "
                "weights in one place"
            )
        if not isinstance(given, list) or len(given) != len(self.rewards):
            count = len(given) if isinstance(given, list) else "not a list of"
            raise LlmrecError(
                f"trainer.reward_weights has {count} weight(s) for {len(self.rewards)} reward(s) "
                f"({', '.join(e['name'] for e in self.rewards)}); give one weight per reward, in order"
            )

    @property
    def weights(self) -> list[float]:
        """One weight per reward, in order."""
        given = self.trainer.get("reward_weights")
        if given is not None:
            return [float(w) for w in given]
        return [float(e.get("weight", 1.0)) for e in self.rewards]

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain data (what ``config.yaml`` of a run holds); RL runs prompt with titles only."""
        return {**asdict(self), "representation": "none"}


def _reward_entry(entry: Any, index: int) -> dict[str, Any]:
    """A reward entry checked against its class: a known name, a numeric weight, the class's own parameters."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or "name" not in entry:
        raise LlmrecError(f"rewards[{index}]: a reward is a name or a mapping with a name, got {entry!r}")
    name = entry["name"]
    if name not in REWARDS:
        raise LlmrecError(f"rewards[{index}]: unknown reward {name!r}; known rewards: {', '.join(REWARDS)}")
    if "weight" in entry and not isinstance(entry["weight"], int | float):
        raise LlmrecError(f"rewards[{index}] ({name}): weight must be a number, got {entry['weight']!r}")
    accepted = set(inspect.signature(REWARDS[name]).parameters) - SUPPLIED
    unknown = sorted(set(entry) - accepted - {"name", "weight"})
    if unknown:
        raise LlmrecError(
            f"rewards[{index}] ({name}): unknown parameter(s) {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(accepted)) or 'none'} (and weight)"
        )
    return dict(entry)


def recipe_from_dict(values: dict[str, Any], where: str = "recipe") -> RLRecipe:
    """An :class:`RLRecipe` from plain data; unknown keys (top level, task, lora, trainer) are errors naming
    ``where``."""
    from llmrec.training.config import RecGRPOConfig, check_section

    if not isinstance(values, dict):
        raise LlmrecError(f"{where}: a recipe is a mapping of keys to values, got {type(values).__name__}")
    if "rewards" not in values:
        raise LlmrecError(
            f"{where}: an RL recipe names its rewards (rewards: [format, rank, ...]); an SFT recipe trains with "
            "`llmrec sft`"
        )
    values = {k: v for k, v in values.items() if k != "representation"}  # a run's config.yaml carries it
    known = {f.name for f in fields(RLRecipe)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise LlmrecError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    for name in ("task", "lora", "trainer"):
        section = values.get(name) or {}
        if not isinstance(section, dict):
            raise LlmrecError(f"{where}: {name} must be a mapping, got {type(section).__name__}")
        values[name] = section
    if not isinstance(values.get("rewards") or [], list):
        raise LlmrecError(f"{where}: rewards must be a list of rewards, got {type(values['rewards']).__name__}")
    try:
        values["task"] = config_from_dict(TaskConfig, {"task": "explain", **values["task"]}, f"{where}: task")
    except TypeError as error:
        raise LlmrecError(f"{where}: task: {error}") from None
    check_lora_section(values["lora"], where)
    check_section(RecGRPOConfig, values["trainer"], f"{where}: trainer")
    try:
        return RLRecipe(**values)
    except LlmrecError as error:
        raise LlmrecError(f"{where}: {error}") from None
    except TypeError as error:
        raise LlmrecError(f"{where}: {error}") from None


def load_rl_recipe(
    path: Path | str, overrides: dict[str, Any] | None = None, trainer: dict[str, Any] | None = None
) -> RLRecipe:
    """Read an RL recipe YAML file, or a shipped one by name (``smollm2-pars-c20``); ``overrides`` (top-level
    keys) and ``trainer`` (its trainer section's fields) replace the file's values."""
    values, path = read_recipe(path, overrides, trainer)
    return recipe_from_dict(values, str(path))
