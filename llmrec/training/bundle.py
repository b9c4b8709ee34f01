"""An LLM-recommender run directory (``llmrec sft --out RUN``) and the bundle it serves from.

::

    RUN/config.yaml        the resolved recipe, plus what it was resolved against (``run`` section: llmrec
                           version, run format, base model, dataset, split fingerprint, item representation)
    RUN/lora/              the LoRA adapter, PEFT format (adapter_config.json + adapter_model.safetensors)
    RUN/projector/         the projector (config.json + model.safetensors); absent for text-only runs
    RUN/items.safetensors  the item vectors the projector reads (so the run needs no encoder run to serve)
    RUN/checkpoints/       the trainer's checkpoints (adapter, projector, optimizer, scheduler, RNG states)
    RUN/metrics.json       training figures, then each evaluation
    RUN/log.jsonl          one line per logged training step

:func:`load_bundle` reads the serving parts back, checking the format and that nothing is missing or corrupted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from llmrec.adapters.projectors import Projector
from llmrec.adapters.representations import ItemTable
from llmrec.errors import LlmrecError
from llmrec.training.recipe import Recipe, recipe_from_dict

RUN_FORMAT = 1
KIND = "llm-sft"
ITEMS_FILE = "items.safetensors"


@dataclass
class Bundle:
    """What serves an SFT run: its recipe, run facts, LoRA adapter directory, projector and item vectors."""

    run: Path
    recipe: Recipe
    facts: dict[str, Any]
    lora: Path
    projector: Projector | None
    items: ItemTable | None

    @property
    def base_model(self) -> str:
        """The base LLM the adapter was trained on (a local checkpoint directory)."""
        return str(self.facts["base_model"])

    @property
    def dataset(self) -> str:
        """The dataset the run was trained on (a builtin name or a directory)."""
        return str(self.facts["dataset"])


def is_sft_run(run: Path | str) -> bool:
    """Whether ``run`` is an LLM-recommender run directory (rather than an encoder run)."""
    file = Path(run) / "config.yaml"
    if not file.is_file():
        return False
    try:
        values = yaml.safe_load(file.read_text())
    except yaml.YAMLError:
        return False
    return isinstance(values, dict) and (values.get("run") or {}).get("kind") == KIND


def write_config(run: Path, recipe: Recipe, facts: dict[str, Any]) -> None:
    """Write ``config.yaml``: the recipe and the ``run`` facts it was resolved against."""
    payload = {**recipe.to_dict(), "run": {"kind": KIND, "run_format": RUN_FORMAT, **facts}}
    _atomic_write(run / "config.yaml", yaml.safe_dump(payload, sort_keys=False))


def read_config(run: Path | str) -> tuple[Recipe, dict[str, Any]]:
    """The recipe and run facts of an SFT run directory; a run of another format or kind is a clear error."""
    run = Path(run)
    file = run / "config.yaml"
    if not file.is_file():
        raise LlmrecError(f"{run}: not a run directory (no config.yaml)")
    try:
        values = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        raise LlmrecError(f"{file}: unreadable ({error}); the run directory is corrupted") from None
    facts = values.pop("run", None) if isinstance(values, dict) else None
    if not isinstance(facts, dict) or facts.get("kind") != KIND:
        raise LlmrecError(f"{run}: not an LLM-recommender run (no run.kind {KIND!r} in config.yaml)")
    if facts.get("run_format") != RUN_FORMAT:
        raise LlmrecError(
            f"{file}: run format {facts.get('run_format')} is not {RUN_FORMAT}; it comes from another llmrec "
            "version, retrain it with this one"
        )
    return recipe_from_dict(values, str(file)), facts


def save_items(run: Path, items: ItemTable) -> None:
    """Write the item vectors with their provenance."""
    from safetensors.torch import save_file

    metadata = {"describe": json.dumps(items.describe())}
    tmp = run / f".{ITEMS_FILE}.tmp"
    save_file({"vectors": items.vectors.contiguous()}, str(tmp), metadata=metadata)
    os.replace(tmp, run / ITEMS_FILE)


def load_items(run: Path) -> ItemTable:
    """Read the item vectors written by :func:`save_items`."""
    from safetensors import SafetensorError, safe_open

    file = run / ITEMS_FILE
    try:
        with safe_open(str(file), framework="pt") as handle:
            described = json.loads(handle.metadata()["describe"])
            vectors = handle.get_tensor("vectors")
    except (OSError, SafetensorError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise LlmrecError(f"{file}: missing or corrupted item vectors ({error}); retrain the run") from None
    return ItemTable(
        kind=described["kind"],
        vectors=vectors,
        dims=described["dims"],
        fingerprint=described["fingerprint"],
        encoder_run=described["encoder_run"],
        embedder=described["embedder"],
    )


def load_bundle(run: Path | str) -> Bundle:
    """The serving parts of a finished SFT run; a run that has not finished training is a clear error."""
    run = Path(run)
    recipe, facts = read_config(run)
    lora = run / "lora"
    if not (lora / "adapter_config.json").is_file():
        raise LlmrecError(f"{run}: no trained adapter yet (lora/ is missing); finish training with --resume")
    projector = items = None
    if recipe.uses_items:
        projector = Projector.load(run / "projector")
        items = load_items(run)
        projector.check_sizes(items.dim, projector.config.out_dim)
    return Bundle(run=run, recipe=recipe, facts=facts, lora=lora, projector=projector, items=items)


def read_metrics(run: Path) -> dict[str, Any]:
    """``metrics.json`` of a run (empty when there is none yet)."""
    file = Path(run) / "metrics.json"
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise LlmrecError(f"{file}: corrupted ({error}); delete it and re-evaluate the run") from None


def update_metrics(run: Path, values: dict[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into ``metrics.json`` (atomically) and return the whole content."""
    merged = {**read_metrics(run), **values}
    _atomic_write(Path(run) / "metrics.json", json.dumps(merged, indent=2) + "\n")
    return merged


def _atomic_write(file: Path, text: str) -> None:
    tmp = file.with_name(f".{file.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, file)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def title_vectors(tokenizer: Any, embedding: torch.nn.Module, titles: list[str]) -> torch.Tensor:
    """``[len(titles), H]``: the mean of the LLM's input embeddings of each title's tokens (no gradient)."""
    weight = embedding.weight
    rows = []
    with torch.no_grad():
        for ids in tokenizer(titles, add_special_tokens=False)["input_ids"]:
            ids = ids or [int(tokenizer.eos_token_id or 0)]
            rows.append(weight[torch.tensor(ids, dtype=torch.long)].float().mean(0))
    return torch.stack(rows)
