"""The LLM-run bundle: what an LLM-recommender run directory (``llmrec sft`` or ``llmrec rl``) serves from.

::

    RUN/config.yaml        the resolved recipe and a ``run`` section (kind, run format, llmrec version, base model,
                           dataset, split fingerprint, item representation); see :mod:`llmrec.runs`
    RUN/lora/              the LoRA adapter, PEFT format (adapter_config.json + adapter_model.safetensors)
    RUN/projector/         the projector (config.json + model.safetensors); absent for text-only runs
    RUN/items.safetensors  the item vectors the projector reads (so the run needs no encoder run to serve)
    RUN/checkpoints/       the trainer's checkpoints
    RUN/metrics.json       training figures, then each evaluation
    RUN/log.jsonl          one line per logged training step

:func:`load_bundle` reads the serving parts back, checking the run's kind and format and that nothing is missing
or corrupted. Serving reads only the recipe sections it needs (task, representation, encoder, LoRA rank), never
the training code that wrote them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.adapters.projectors import Projector
from llmrec.adapters.representations import ItemTable
from llmrec.adapters.task_config import TaskConfig
from llmrec.configs import config_from_dict
from llmrec.errors import LlmrecError
from llmrec.runs import LLM_KINDS, atomic_write, read_config, run_kind

ITEMS_FILE = "items.safetensors"
LORA_DIR = "lora"
PROJECTOR_DIR = "projector"


@dataclass
class Bundle:
    """What serves an LLM run: its task, where its items come from, its LoRA adapter, projector and item vectors.

    ``facts`` is the config's ``run`` section; ``encoder`` is the encoder run the recipe named (the source of user
    states for ``user_vector`` tasks and of candidates for ``llmrec recommend``); ``retriever`` is the frozen
    recommender a ``query`` run's queries search the catalog with; ``grounding`` and ``query_titles`` how an RL
    run's answer line was decoded (``catalog``: a query of that many catalog titles).
    """

    run: Path
    kind: str
    task: TaskConfig
    representation: str
    encoder: str | None
    lora_rank: int
    min_len: int
    facts: dict[str, Any]
    lora: Path
    projector: Projector | None
    items: ItemTable | None
    retriever: str = "bm25"
    grounding: str = "none"
    query_titles: int = 1

    @property
    def base_model(self) -> str:
        """The base LLM the adapter was trained on (a local checkpoint directory or hub id)."""
        return str(self.facts["base_model"])

    @property
    def dataset(self) -> str:
        """The dataset the run was trained on (a builtin name or a directory)."""
        return str(self.facts["dataset"])


def is_llm_run(run: Path | str) -> bool:
    """Whether ``run`` is an LLM-recommender run directory (rather than an encoder run)."""
    return run_kind(run) in LLM_KINDS


def save_items(run: Path, items: ItemTable) -> None:
    """Write the item vectors with their provenance."""
    from safetensors.torch import save_file

    metadata = {"describe": json.dumps(items.describe())}
    atomic_write(
        Path(run) / ITEMS_FILE,
        lambda tmp: save_file({"vectors": items.vectors.contiguous()}, str(tmp), metadata=metadata),
    )


def load_items(run: Path) -> ItemTable:
    """Read the item vectors written by :func:`save_items`."""
    from safetensors import SafetensorError, safe_open

    file = Path(run) / ITEMS_FILE
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


def load_bundle(run: Path | str, checkpoint: Path | str | None = None) -> Bundle:
    """The serving parts of a finished LLM run; a run that has not finished training is a clear error.

    ``checkpoint``: one of the run's checkpoint directories, whose adapter and projector replace the run's own
    (how a run is validated while it trains).
    """
    run = Path(run)
    trained = Path(checkpoint) if checkpoint is not None else run
    values, facts = read_config(run, LLM_KINDS)
    file = run / "config.yaml"
    try:
        task = config_from_dict(TaskConfig, values.get("task"), f"{file}: task")
        representation = str(values.get("representation", "none"))
        lora_rank = int((values.get("lora") or {})["r"])
    except (KeyError, TypeError, ValueError) as error:
        raise LlmrecError(f"{file}: incomplete run config ({error}); the run directory is corrupted") from None
    lora = trained / LORA_DIR
    if not (lora / "adapter_config.json").is_file():
        raise LlmrecError(f"{trained}: no trained adapter yet ({LORA_DIR}/ is missing); finish training with --resume")
    projector = items = None
    if representation != "none":
        projector = Projector.load(trained / PROJECTOR_DIR)
        items = load_items(run)
        projector.check_sizes(items.dim, projector.config.out_dim)
    return Bundle(
        run=run,
        kind=str(facts["kind"]),
        task=task,
        representation=representation,
        encoder=values.get("encoder"),
        lora_rank=lora_rank,
        min_len=int(values.get("min_len", 3)),
        facts=facts,
        lora=lora,
        projector=projector,
        items=items,
        retriever=str(values.get("retriever") or "bm25"),
        grounding=str(values.get("grounding") or "none"),
        query_titles=int(values.get("query_titles") or 1),
    )
