"""RL alignment of an LLM recommender (``llmrec rl``): TRL's ``GRPOTrainer`` on recommendation rewards, with a
LoRA adapter.

:func:`train_rl` turns an :class:`llmrec.training.rl_recipe.RLRecipe` into a run directory that serves like an SFT
run (layout in :mod:`llmrec.adapters.bundle`, kind ``llm-rl``). :func:`prepare_rl` checks the recipe, its data, its
rewards and the ``--init`` run before anything trains. The prompts are the task's training examples
(:mod:`llmrec.adapters.tasks`) with the columns the rewards read (:mod:`llmrec.training.rewards`): ``target``,
``future`` (the user's next items after it, inside the training prefix), ``history`` (everything before it) and
``candidates``. Grounded recipes generate their rollouts through :mod:`llmrec.training.rollouts`.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.adapters.bundle import LORA_DIR
from llmrec.adapters.tasks import TaskExample, build_examples, prompt_example
from llmrec.adapters.templates import check_template
from llmrec.catalog.catalog import Catalog
from llmrec.configs import resolve_threads
from llmrec.data.builtin import load_dataset
from llmrec.data.dataset import Dataset, user_counts
from llmrec.data.splits import Split, leave_one_out_split
from llmrec.devices import resolve_device
from llmrec.encoders.run import check_encoder_run
from llmrec.errors import LlmrecError
from llmrec.inference.lora import check_lora, check_lora_targets
from llmrec.models.defaults import resolve_model
from llmrec.runs import (
    LLM_KINDS,
    checkpoints_dir,
    config_file,
    numbered_checkpoints,
    peak_rss_mib,
    read_config,
    read_metrics,
    update_metrics,
    write_config,
)
from llmrec.training.config import RecGRPOConfig, trainer_config
from llmrec.training.rl_recipe import REWARDS, RLRecipe, recipe_from_dict

KIND = "llm-rl"


@dataclass
class PreparedRL:
    """An RL recipe checked against its data, rewards and starting adapter: everything training needs but the
    weights."""

    recipe: RLRecipe
    config: RecGRPOConfig
    dataset: Dataset
    split: Split
    base_model: str
    init: Path | None
    rewards: list[Any]


def grpo_config(recipe: RLRecipe, run: Path) -> RecGRPOConfig:
    """The recipe's ``trainer`` section as a :class:`RecGRPOConfig` writing checkpoints into ``run``, with one
    weight per reward."""
    managed = {
        "output_dir": str(checkpoints_dir(run)),
        "use_cpu": resolve_device(recipe.device) == "cpu",
        "remove_unused_columns": False,
    }
    values = {**recipe.trainer, "reward_weights": recipe.weights}
    config = trainer_config(RecGRPOConfig, values, managed, "recipe trainer")
    if config.use_vllm and recipe.grounding != "none":
        raise LlmrecError(
            f"grounding {recipe.grounding!r} decodes the answer line under a logits processor on transformers' "
            "generation; set trainer.use_vllm false, or grounding none to roll out on vLLM"
        )
    return config


def check_init(init: Path, base_model: str) -> None:
    """Raise unless ``init`` is a finished text-only LLM run (SFT or RL) of ``base_model``, whose adapter fits it."""
    values, facts = read_config(init, LLM_KINDS)
    if str(facts.get("base_model")) != base_model:
        raise LlmrecError(
            f"--init {init} was trained on base model {facts.get('base_model')!r}, but the recipe's base model is "
            f"{base_model!r}; continue a run of the same base model"
        )
    if values.get("representation", "none") != "none":
        raise LlmrecError(
            f"--init {init} prompts with item vectors (representation {values.get('representation')!r}); RL "
            "prompts show titles only: start from a text-only run (representation none) or from the base model"
        )
    check_lora(init / LORA_DIR, base_model)


def build_rewards(recipe: RLRecipe, dataset: Dataset) -> list[Any]:
    """The recipe's reward functions, in order, each given the catalog, marker and retriever they need."""
    catalog = Catalog.from_dataset(dataset)
    supplied = {
        "catalog": catalog,
        "marker": recipe.task.marker,
        "dataset": str(dataset.path) if recipe.dataset != dataset.name else recipe.dataset,
        "retriever": recipe.retriever,
        "encoder_run": recipe.encoder,
    }
    out = []
    for entry in recipe.rewards:
        cls = REWARDS[entry["name"]]
        params = {k: v for k, v in entry.items() if k not in ("name", "weight")}
        wanted = set(inspect.signature(cls).parameters)
        try:
            out.append(cls(**params, **{k: v for k, v in supplied.items() if k in wanted}))
        except (TypeError, ValueError) as error:
            raise LlmrecError(f"reward {entry['name']}: {error}") from None
    return out


def prepare_rl(recipe: RLRecipe, run: Path, init: Path | None = None) -> PreparedRL:
    """Check ``recipe`` (and the ``init`` run) before any training: trainer settings, template, base model and
    LoRA targets, dataset, encoder run, rewards."""
    config = grpo_config(recipe, run)
    check_template(recipe.task)
    base_model = resolve_model(recipe.base_model)
    if init is not None:
        check_init(Path(init), base_model)
    else:
        check_lora_targets(base_model, recipe.lora.get("target_modules"))
    dataset = load_dataset(recipe.dataset)
    if recipe.encoder:
        check_encoder_run(Path(recipe.encoder), dataset)
    if recipe.retriever == "encoder" and not recipe.encoder:
        raise LlmrecError("retriever 'encoder' needs an encoder run: set encoder: in the recipe")
    rewards = build_rewards(recipe, dataset)
    split = leave_one_out_split(dataset, min_len=recipe.min_len)
    return PreparedRL(recipe, config, dataset, split, base_model, Path(init) if init else None, rewards)


def _future(split: Split, example: TaskExample, horizon: int) -> list[int]:
    """The user's next ``horizon`` items after the example's target, inside the training prefix."""
    end = int(split.train_len[example.user])
    return [int(i) for i in split.sequences[example.user][example.position + 1 : end][:horizon]]


def rl_rows(prepared: PreparedRL) -> list[dict[str, Any]]:
    """One training prompt per example of the task, with the columns the rewards read (module docstring).

    With ``future_candidates`` (explain), the user's future items replace negatives among the candidates (at the
    negatives' positions, so the target keeps its place) and the prompt is rendered again.
    """
    recipe, dataset, split = prepared.recipe, prepared.dataset, prepared.split
    examples = build_examples(dataset, split, "train", recipe.task)
    if prepared.config.max_examples:
        examples = examples[: prepared.config.max_examples]
    rng = np.random.default_rng(recipe.task.seed)
    # re-rendered prompts count the training prefixes too, as build_examples does: no evaluation target is counted
    counts = user_counts(split.train_sequences(), dataset.num_items) if recipe.task.counts else None
    rows = []
    for example in examples:
        future = _future(split, example, recipe.horizon)
        candidates = list(example.candidates)
        prompt = example.prompt
        if recipe.future_candidates and candidates and future:
            slots = [n for n, c in enumerate(candidates) if c != example.target]
            fresh = [i for i in dict.fromkeys(future) if i not in candidates]
            for slot, item in zip(rng.permutation(slots).tolist(), fresh, strict=False):
                candidates[slot] = item
            served = prompt_example(dataset, recipe.task, example.user, example.history, candidates, counts=counts)
            prompt = served.prompt
        rows.append({
            "prompt": prompt, "user": example.user, "target": example.target, "future": future,
            "history": [int(i) for i in split.sequences[example.user][: example.position]],
            "candidates": candidates,
        })  # fmt: skip
    return rows


def _start(recipe: RLRecipe, run: Path, resume: bool, init: Path | None) -> tuple[RLRecipe, Path | None]:
    """The recipe and init run to train: the run's own when resuming (it must not have finished), else the given
    ones, refusing to overwrite an existing run."""
    if resume:
        values, facts = read_config(run, (KIND,))
        if read_metrics(run).get("finished"):
            raise LlmrecError(f"{run}: this run has already finished training; evaluate it or start another --out")
        return recipe_from_dict(values, str(config_file(run))), Path(facts["init"]) if facts.get("init") else None
    if config_file(run).exists():
        raise LlmrecError(f"{run}: a run already exists here; pass --resume to continue it or choose another --out")
    return recipe, init


def _model(prepared: PreparedRL) -> tuple[Any, Any]:
    """The base LLM in float32 with a fresh seeded LoRA adapter, or the ``init`` run's adapter, trainable."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    tokenizer = AutoTokenizer.from_pretrained(prepared.base_model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(prepared.base_model, dtype=torch.float32)
    set_seed(prepared.config.seed)
    if prepared.init is not None:
        model = PeftModel.from_pretrained(model, str(prepared.init / LORA_DIR), is_trainable=True)
    else:
        model = get_peft_model(model, LoraConfig(**prepared.recipe.lora, task_type="CAUSAL_LM"))
    return model, tokenizer


def _lora_section(prepared: PreparedRL) -> dict[str, Any]:
    """The LoRA settings the run trains: the recipe's, or those of the ``init`` run's adapter."""
    if prepared.init is None:
        return prepared.recipe.lora
    adapter = json.loads((prepared.init / LORA_DIR / "adapter_config.json").read_text())
    keys = ("r", "lora_alpha", "lora_dropout", "target_modules")
    return {k: sorted(v) if isinstance(v, list | set) else v for k, v in adapter.items() if k in keys}


def train_rl(
    recipe: RLRecipe,
    out: Path | str,
    init: Path | str | None = None,
    resume: bool = False,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Train (or resume) an RL run into ``out`` and return its ``metrics.json`` content.

    ``init`` is a finished text-only LLM run of the same base model whose adapter training continues;
    ``callbacks`` are extra ``transformers.TrainerCallback`` objects.
    """
    run = Path(out)
    recipe, init_run = _start(recipe, run, resume, Path(init) if init else None)
    prepared = prepare_rl(recipe, run, init_run)
    config = prepared.config
    if not config.use_vllm:  # TRL's trainer imports vLLM's client modules, whose import-time notices are noise here
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    # imported after the checks, so a mistaken command fails at once and quietly
    from datasets import Dataset as RowTable
    from transformers.utils import logging as hf_logging
    from trl import GRPOTrainer

    from llmrec.training.callbacks import Clock, JsonLog, seconds_before
    from llmrec.training.rollouts import GroundedRollout, prompt_key

    if resume and read_config(run, (KIND,))[1].get("split_fingerprint") != prepared.split.fingerprint():
        raise LlmrecError(f"{run}: the dataset changed since this run started (split fingerprint differs)")
    torch.set_num_threads(resolve_threads(config.threads, 1))
    rows = rl_rows(prepared)
    if not rows:
        raise LlmrecError(f"dataset {prepared.dataset.name} gives no training prompts (every user is too short)")
    if not resume:
        run.mkdir(parents=True, exist_ok=True)
        values = recipe.to_dict()
        values["lora"] = _lora_section(prepared)
        facts = {
            "base_model": prepared.base_model,
            "dataset": str(prepared.dataset.path) if recipe.dataset != prepared.dataset.name else recipe.dataset,
            "split_fingerprint": prepared.split.fingerprint(),
            "items": None,
            "init": str(init_run) if init_run else None,
            "examples": len(rows),
        }
        write_config(run, KIND, values, facts)

    rollout = None
    if recipe.grounding != "none":
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is TRL's documented hook
        candidates = {prompt_key(r["prompt"]): r["candidates"] for r in rows}
        rollout = GroundedRollout(Catalog.from_dataset(prepared.dataset), recipe.grounding, recipe.task.marker,
                                  candidates, recipe.query_titles)  # fmt: skip
    model, tokenizer = _model(prepared)
    hf_logging.set_verbosity_error()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=prepared.rewards,
        args=config,
        train_dataset=RowTable.from_list(rows),
        processing_class=tokenizer,
        callbacks=[JsonLog(run), *(callbacks or [])],
        rollout_func=rollout,
    )
    found = numbered_checkpoints(run) if resume else []
    checkpoint = str(found[-1]) if found else None
    base = seconds_before(run, checkpoint)
    started = time.perf_counter()
    trainer.add_callback(Clock(run, base, started))
    output = trainer.train(resume_from_checkpoint=checkpoint)
    wall = time.perf_counter() - started
    _save_adapter(trainer.model, run / LORA_DIR)
    previous = read_metrics(run)
    steps = int(trainer.state.global_step)
    seconds = base + wall
    return update_metrics(
        run,
        {
            "finished": True,
            "train_loss": float(output.training_loss),
            "steps": steps,
            "examples": len(rows),
            "train_seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / max(steps, 1), 2),
            "peak_rss_mib": round(max(previous.get("peak_rss_mib", 0.0), peak_rss_mib()), 1),
            "device": str(trainer.args.device),
            "threads": torch.get_num_threads(),
            "resumed": bool(resume),
        },
    )


def _save_adapter(model: Any, target: Path) -> None:
    """Write the trained adapter as a PEFT directory, replacing any earlier one whole."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
