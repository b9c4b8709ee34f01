"""LoRA supervised fine-tuning of an LLM recommender (``llmrec sft``): LoRA and projector trained jointly on TRL's
``SFTTrainer``, the encoder frozen.

:func:`train_sft` turns a :class:`llmrec.training.recipe.Recipe` into a run directory (layout in
:mod:`llmrec.adapters.bundle`): :func:`prepare` checks the recipe against its data, encoder run and LLM before
anything trains; the examples come from :mod:`llmrec.adapters.tasks`, their order from
:mod:`llmrec.training.curriculum`, the model from :mod:`llmrec.training.model`, the trainer from
:mod:`llmrec.training.trainer`; each checkpoint is scored on validation and the best one kept
(:mod:`llmrec.training.validation`). ``accelerate launch --multi_gpu --num_processes 2 -m llmrec sft ...`` trains the
same run with DDP (on CPU as well).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmrec.adapters.bundle import save_items
from llmrec.adapters.representations import ItemTable, UserStates, item_representation
from llmrec.adapters.tasks import TaskExample, build_examples, query_completions
from llmrec.adapters.templates import check_template
from llmrec.configs import resolve_threads
from llmrec.data.builtin import load_dataset
from llmrec.data.dataset import Dataset
from llmrec.data.splits import Split, leave_one_out_split
from llmrec.devices import resolve_device
from llmrec.encoders.run import check_encoder_run
from llmrec.errors import LlmrecError
from llmrec.inference.lora import check_lora_targets
from llmrec.models.defaults import resolve_model
from llmrec.runs import (
    checkpoints_dir,
    config_file,
    numbered_checkpoints,
    peak_rss_mib,
    read_config,
    read_metrics,
    update_metrics,
    write_config,
)
from llmrec.training.config import RecSFTConfig, trainer_config
from llmrec.training.recipe import Recipe, recipe_from_dict

KIND = "llm-sft"


@dataclass
class Prepared:
    """A recipe checked against its data, encoder run and LLM: everything training needs but the weights."""

    recipe: Recipe
    config: RecSFTConfig
    dataset: Dataset
    split: Split
    base_model: str
    hidden_size: int
    items: ItemTable | None

    def build_model(self) -> tuple[Any, Any]:
        """A fresh :class:`llmrec.training.model.RecommenderLM` (seeded LoRA and projector) and its tokenizer."""
        from llmrec.training.model import build_model

        titles = self.dataset.titles.tolist()
        return build_model(self.base_model, self.recipe, self.config, self.items, titles)


def llm_hidden_size(base_model: str) -> int:
    """The hidden size of a causal LM checkpoint (read from its config, no weights loaded)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(base_model)
    except (OSError, ValueError) as error:
        raise LlmrecError(f"cannot load base model {base_model!r}: {str(error).splitlines()[0]}") from None
    return int(getattr(config, "hidden_size", 0) or config.get_text_config().hidden_size)


def sft_config(recipe: Recipe, run: Path) -> RecSFTConfig:
    """The recipe's ``trainer`` section as a :class:`RecSFTConfig` writing checkpoints into ``run``."""
    managed = {
        "output_dir": str(checkpoints_dir(run)),
        "use_cpu": resolve_device(recipe.device) == "cpu",
        "remove_unused_columns": False,
        "dataset_kwargs": {"skip_prepare_dataset": True},
        "train_sampling_strategy": "sequential",
        "data_seed": int(recipe.trainer.get("seed", RecSFTConfig.seed)),
    }
    return trainer_config(RecSFTConfig, recipe.trainer, managed, "recipe trainer")


def check_objective(recipe: Recipe, config: RecSFTConfig) -> None:
    """The item-scored objective's settings fit the task: a catalog loss scores items, and distillation learns the
    encoder's own catalog scores from its user state in every prompt."""
    if config.item_loss == "catalog" and recipe.task.output != "item":
        raise LlmrecError(f"trainer.item_loss 'catalog' is for task output item, not {recipe.task.output!r}")
    if config.distill > 0 and (
        config.item_loss != "catalog" or not recipe.task.user_vector or recipe.curriculum.kind != "none"
    ):
        raise LlmrecError(
            "trainer.distill learns the encoder's own catalog scores, which need item_loss 'catalog' and the "
            "encoder's user state in every prompt (task user_vector: true, curriculum none)"
        )


def prepare(recipe: Recipe, run: Path) -> Prepared:
    """Check ``recipe`` before any training: its trainer settings, its template fits the item representation, the
    encoder run exists and was trained on the recipe's dataset, and the projector's sizes match the item vectors
    and the LLM."""
    config = sft_config(recipe, run)
    check_objective(recipe, config)
    if recipe.task.task == "query" and recipe.representation != "none":
        raise LlmrecError(
            f"task 'query' is text only (representation none, not {recipe.representation!r}): it is the warm "
            "start of Rec-R1's RL, whose prompts show titles"
        )
    check_template(recipe.task)
    if recipe.task.task == "explain":
        raise LlmrecError(
            "task 'explain' has no gold rationales to fine-tune on; train rank or next, and use explain for "
            "reasoning evaluation and RL"
        )
    base_model = resolve_model(recipe.base_model)
    hidden = llm_hidden_size(base_model)
    check_lora_targets(base_model, recipe.lora.get("target_modules"))
    dataset = load_dataset(recipe.dataset)
    items = None
    if recipe.uses_items:
        if recipe.representation in ("id", "hybrid"):
            if not recipe.encoder:
                raise LlmrecError(
                    f"representation {recipe.representation!r} needs an encoder run: set encoder: in the recipe or "
                    "pass --encoder RUN (train one with `llmrec encoder train`)"
                )
            check_encoder_run(Path(recipe.encoder), dataset)
        items = item_representation(recipe.representation, dataset, recipe.encoder, recipe.embedder, recipe.device)
        recipe.projector = recipe.projector.resolve(items.dim, hidden)
    split = leave_one_out_split(dataset, min_len=recipe.min_len)
    return Prepared(recipe, config, dataset, split, base_model, hidden, items)


def training_examples(prepared: Prepared) -> tuple[list[TaskExample], list[TaskExample] | None]:
    """Each training example rendered text-only and, with an item representation, hybrid (the curriculum picks)."""
    recipe = prepared.recipe
    text_task = recipe.task.titles_only()
    text = build_examples(prepared.dataset, prepared.split, "train", text_task)
    if recipe.task.task == "query":  # no gold query: the target's title after a rationale from the history
        for example, answer in zip(text, query_completions(prepared.dataset, text, recipe.task.marker), strict=True):
            example.answer = answer
    hybrid = None
    if recipe.uses_items:
        states = UserStates(recipe.encoder, prepared.dataset) if recipe.task.user_vector and recipe.encoder else None
        teacher = prepared.config.distill > 0 or recipe.task.prior > 0
        if states is not None and teacher and states.encoder.item_bias() is not None:
            raise LlmrecError(
                f"{recipe.encoder}: trainer.distill's teacher and task prior's scores are the user state dotted with "
                f"the item embeddings, but this {states.encoder.name} also adds a per-item output bias to its "
                "scores; train one without output_bias, or set distill and prior to 0"
            )
        hybrid = build_examples(prepared.dataset, prepared.split, "train", recipe.task, states)
    limit = prepared.config.max_examples
    if limit:
        text, hybrid = text[:limit], (hybrid[:limit] if hybrid is not None else None)
    return text, hybrid


def validates(recipe: Recipe, config: RecSFTConfig) -> bool:
    """Whether checkpoints are scored on validation: asked for, and the task ranks candidates (``next`` runs
    have none to rank)."""
    return bool(config.validate) and recipe.task.task == "rank"


def _world_size() -> int:
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def _start(recipe: Recipe, run: Path, resume: bool, main: bool) -> Recipe:
    """The recipe to train: the run's own when resuming (which must not have finished), else ``recipe``, refusing
    to overwrite an existing run."""
    if resume:
        values, _ = read_config(run, (KIND,))
        if read_metrics(run).get("finished"):
            raise LlmrecError(f"{run}: this run has already finished training; evaluate it or start another --out")
        return recipe_from_dict(values, str(config_file(run)))
    if main and config_file(run).exists():  # the other processes may find the one the first just wrote
        raise LlmrecError(f"{run}: a run already exists here; pass --resume to continue it or choose another --out")
    return recipe


def train_sft(
    recipe: Recipe, out: Path | str, resume: bool = False, callbacks: list[Any] | None = None
) -> dict[str, Any]:
    """Train (or resume) an SFT run into ``out`` and return its ``metrics.json`` content.

    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (progress hooks, early interruption).
    """
    from datasets import Dataset as RowTable
    from transformers.utils import logging as hf_logging

    from llmrec.adapters.hybrid import HybridCollator
    from llmrec.training.callbacks import Clock, JsonLog, seconds_before
    from llmrec.training.curriculum import training_rows
    from llmrec.training.trainer import RecSFTTrainer
    from llmrec.training.validation import Validation, choose_checkpoint

    run = Path(out)
    main = int(os.environ.get("RANK", "0")) == 0  # data parallel: only the first process writes the run directory
    recipe = _start(recipe, run, resume, main)
    prepared = prepare(recipe, run)
    config = prepared.config
    if resume and read_config(run, (KIND,))[1].get("split_fingerprint") != prepared.split.fingerprint():
        raise LlmrecError(f"{run}: the dataset changed since this run started (split fingerprint differs)")
    torch.set_num_threads(resolve_threads(config.threads, _world_size()))
    text, hybrid = training_examples(prepared)
    if not text:
        raise LlmrecError(f"dataset {prepared.dataset.name} gives no training examples (every user is too short)")
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps * _world_size()
    if config.max_steps <= 0:  # the rows are drawn for the whole run, so the step count is fixed up front
        config.max_steps = max(1, math.ceil(config.num_train_epochs * len(text) / per_step))
    steps = config.max_steps
    rows = training_rows(text, hybrid, recipe, steps * per_step, config.seed)
    if not resume and main:
        run.mkdir(parents=True, exist_ok=True)
        facts = {
            "base_model": prepared.base_model,
            "dataset": str(prepared.dataset.path) if recipe.dataset != prepared.dataset.name else recipe.dataset,
            "split_fingerprint": prepared.split.fingerprint(),
            "items": prepared.items.describe() if prepared.items is not None else None,
            "examples": len(text),
            "steps": steps,
        }
        write_config(run, KIND, recipe.to_dict(), facts)
        if prepared.items is not None:
            save_items(run, prepared.items)

    model, tokenizer = prepared.build_model()
    hf_logging.set_verbosity_error()
    validating = validates(recipe, config)
    watch = [Validation(run, config.valid_metric, config.valid_users, recipe.device)] if validating else []
    trainer = RecSFTTrainer(
        model=model,
        args=config,
        train_dataset=RowTable.from_list(rows),
        processing_class=tokenizer,
        data_collator=HybridCollator(model.prompter, padding_side="left"),
        callbacks=[JsonLog(run), *watch, *(callbacks or [])],
    )
    found = numbered_checkpoints(run) if resume else []
    checkpoint = str(found[-1]) if found else None
    base = seconds_before(run, checkpoint) if main else 0.0
    started = time.perf_counter()
    trainer.add_callback(Clock(run, base, started))
    output = trainer.train(resume_from_checkpoint=checkpoint)
    wall = time.perf_counter() - started
    if not main:
        return {}
    chosen: dict[str, Any] = {"best_checkpoint": None}  # without validation the last checkpoint is the run's
    if validating:
        best, figures = choose_checkpoint(run, config.valid_metric, config.valid_users, recipe.device)
        model.load_trainable(best)
        chosen = {"best_checkpoint": best.name, "valid_metric": config.valid_metric, "valid_best": figures}
    model.save(run)
    previous = read_metrics(run)
    return update_metrics(
        run,
        {
            "finished": True,
            **chosen,
            "train_loss": float(output.training_loss),
            "steps": int(trainer.state.global_step),
            "examples": len(text),
            "rows_trained": steps * per_step,
            "train_seconds": round(base + wall, 1),
            "peak_rss_mib": round(max(previous.get("peak_rss_mib", 0.0), peak_rss_mib()), 1),
            "processes": _world_size(),
            "device": str(trainer.args.device),
            "threads": torch.get_num_threads(),  # per process: with processes, what train_seconds was measured on
            "resumed": bool(resume),
        },
    )
