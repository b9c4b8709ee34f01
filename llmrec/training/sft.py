"""LoRA supervised fine-tuning of an LLM recommender: LoRA and projector trained jointly, the encoder frozen.

:func:`train_sft` turns a :class:`llmrec.training.recipe.Recipe` into a run directory (layout in
:mod:`llmrec.training.bundle`). The model is :class:`RecommenderLM`: the base LLM wrapped by PEFT, and the
projector, whose forward pass splices the projected item vectors into the token embeddings at the prompts'
``<item-emb>`` slots (so gradients reach the projector, and data-parallel processes each do their own splicing).
Training runs on ``transformers.Trainer`` (TRL's ``SFTTrainer`` tokenizes text datasets itself and cannot take
the spliced embeddings), subclassed only to give the projector its own learning rate and to checkpoint the
adapter and projector instead of the whole LLM. ``accelerate launch --multi_gpu --num_processes 2 -m llmrec sft
...`` trains the same run with DDP (on CPU as well).

The whole training order is fixed before the first step (:func:`training_rows`): the examples of each epoch in
a seeded shuffle, each rendered text-only or hybrid as the curriculum says at its position, so a run resumed from
a checkpoint sees the very same batches as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrec import __version__
from llmrec.adapters.hybrid import IGNORE_INDEX, HybridCollator, HybridPrompter
from llmrec.adapters.projectors import Projector, build_projector
from llmrec.adapters.representations import ItemTable, UserStates, check_encoder_run, item_representation
from llmrec.configs import resolve_threads
from llmrec.data.builtin import load_dataset
from llmrec.data.dataset import Dataset
from llmrec.data.splits import Split, leave_one_out_split
from llmrec.errors import LlmrecError
from llmrec.models.defaults import resolve_model
from llmrec.training.bundle import (
    peak_rss_mib,
    read_config,
    read_metrics,
    save_items,
    title_vectors,
    update_metrics,
    write_config,
)
from llmrec.training.recipe import Recipe
from llmrec.training.tasks import TaskConfig, TaskExample, build_examples, check_template

CHECKPOINTS = "checkpoints"


@dataclass
class Prepared:
    """A recipe checked against its data, encoder run and LLM: everything training needs but the weights."""

    recipe: Recipe
    dataset: Dataset
    split: Split
    base_model: str
    hidden_size: int
    items: ItemTable | None


def _llm_hidden_size(base_model: str) -> int:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(base_model)
    except (OSError, ValueError) as error:
        raise LlmrecError(f"cannot load base model {base_model!r}: {str(error).splitlines()[0]}") from None
    return int(getattr(config, "hidden_size", 0) or config.get_text_config().hidden_size)


def prepare(recipe: Recipe) -> Prepared:
    """Check ``recipe`` before any training: its template fits the item representation, the encoder run exists
    and was trained on the recipe's dataset, and the projector's sizes match the item vectors and the LLM."""
    check_template(recipe.task)
    if recipe.task.task == "explain":
        raise LlmrecError(
            "task 'explain' has no gold rationales to fine-tune on; train rank or next, and use explain for "
            "reasoning evaluation and RL"
        )
    base_model = resolve_model(recipe.base_model)
    hidden = _llm_hidden_size(base_model)
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
        items = item_representation(recipe.representation, dataset, recipe.encoder, recipe.embedder)
        recipe.projector = recipe.projector.resolve(items.dim, hidden)
    split = leave_one_out_split(dataset, min_len=recipe.min_len)
    return Prepared(recipe, dataset, split, base_model, hidden, items)


def hybrid_probability(recipe: Recipe, progress: float) -> float:
    """Probability that an example at ``progress`` (0 to 1 through training) is rendered hybrid.

    >>> r = Recipe(representation="text")
    >>> [round(hybrid_probability(r, t), 2) for t in (0.0, 0.25, 0.5, 1.0)]
    [0.0, 0.5, 1.0, 1.0]
    """
    if not recipe.uses_items:
        return 0.0
    curriculum = recipe.curriculum
    if curriculum.kind == "none":
        return 1.0
    if curriculum.kind == "rsllm":
        return float(progress >= curriculum.text_fraction)
    ramp = min(1.0, progress / curriculum.ramp) if curriculum.ramp > 0 else 1.0
    return curriculum.start + (curriculum.end - curriculum.start) * ramp


def training_rows(
    text: list[TaskExample], hybrid: list[TaskExample] | None, recipe: Recipe, total: int
) -> list[dict[str, Any]]:
    """The first ``total`` training rows in order: epochs of seeded shuffles of the examples, each row the
    text-only or the hybrid rendering of its example, drawn with :func:`hybrid_probability` at its position."""
    seed = recipe.trainer.seed
    rows: list[dict[str, Any]] = []
    coins = np.random.default_rng([seed, 1]).random(total)
    epoch = 0
    while len(rows) < total:
        order = np.random.default_rng([seed, 0, epoch]).permutation(len(text))
        for index in order[: total - len(rows)].tolist():
            use_hybrid = hybrid is not None and coins[len(rows)] < hybrid_probability(recipe, len(rows) / total)
            example = hybrid[index] if use_hybrid and hybrid is not None else text[index]
            row = {"prompt": example.prompt, "item_ids": example.item_ids, "user_vectors": example.user_vectors}
            if recipe.task.output == "item":  # scored by the candidates' vectors: no answer tokens
                row |= {"candidates": example.candidates, "target_index": example.target_index}
            else:
                row["answer"] = example.answer
            rows.append(row)
        epoch += 1
    return rows


class RecommenderLM(nn.Module):
    """The LLM (with LoRA) and the projector as one module: ``forward(**batch) -> {"loss", "lm_loss", ...}``.

    ``batch`` is a :class:`llmrec.adapters.HybridCollator` batch with labels, best padded on the left: logits over
    the vocabulary are computed only from the earliest answer position on, which left padding puts near the end
    of every row. Batches with candidates (task output item) are scored by the last hidden state against the
    candidates' projected vectors instead, the target among its candidates (``item_loss="candidates"``) or among
    every item (``"catalog"``); with ``distill > 0`` the catalog loss adds the KL divergence from the encoder's own
    catalog distribution (the batch's user states dotted with the ``id`` item vectors: the teacher) to the LLM's,
    softened by ``distill_temperature``. With ``contrastive_weight > 0`` the loss adds
    RSLLM's alignment term over the batch's distinct items: an InfoNCE loss between each projected item vector and
    the LLM's (frozen) embedding of the item's title, both directions, at ``temperature``.
    """

    def __init__(
        self,
        llm: nn.Module,
        prompter: HybridPrompter,
        titles: torch.Tensor | None = None,
        contrastive_weight: float = 0.0,
        temperature: float = 0.1,
        item_loss: str = "candidates",
        distill: float = 0.0,
        distill_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.item_loss = item_loss
        self.distill = distill
        self.distill_temperature = distill_temperature
        self.llm = llm
        self.projector = prompter.projector
        self.prompter = prompter
        self.contrastive_weight = contrastive_weight
        self.temperature = temperature
        self.register_buffer("titles", titles if titles is not None else torch.zeros(0), persistent=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        item_slots: torch.Tensor,
        item_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        user_slots: torch.Tensor | None = None,
        user_vectors: torch.Tensor | None = None,
        candidate_ids: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """LM loss of the answers, or (item-scored batches: ``candidate_ids`` and ``targets``) the cross-entropy of
        the target among its candidates or, with ``item_loss="catalog"``, among every item; plus the contrastive
        term when the batch holds items and it is enabled."""
        embeds = self.prompter.embed_batch(input_ids, item_slots, item_ids, user_slots, user_vectors)  # (B, T, H)
        if candidate_ids is not None and targets is not None:
            state = self.last_state(embeds, attention_mask)  # (B, H)
            if self.item_loss == "catalog":  # the target against every item, as the encoders' full softmax
                columns = candidate_ids.gather(1, targets[:, None])[:, 0] - 1  # the target's item id - 1
                scores = self.prompter.score_catalog(state)  # (B, N)
                lm_loss = F.cross_entropy(scores, columns)
                if self.distill > 0:
                    kl = self.distill_loss(scores, user_vectors)
                    result = {"loss": lm_loss + self.distill * kl, "lm_loss": lm_loss.detach()}
                    return self._with_contrast(result | {"distill_loss": kl.detach()}, item_ids)
            else:
                lm_loss = F.cross_entropy(self.prompter.score_candidates(state, candidate_ids), targets)
            return self._with_contrast({"loss": lm_loss, "lm_loss": lm_loss.detach()}, item_ids)
        if labels is None:
            raise LlmrecError("RecommenderLM trains on batches with labels (rows with an answer) or candidates")
        # Left padding puts every answer at the end of its row: only the last positions need logits over the
        # vocabulary (the answer is a few tokens; the prompt hundreds).
        answer = labels != IGNORE_INDEX  # (B, T)
        first = int(answer.float().argmax(1).min()) if bool(answer.any()) else labels.shape[1] - 1
        keep = labels.shape[1] - first + 1
        logits = self.llm(inputs_embeds=embeds, attention_mask=attention_mask, logits_to_keep=keep).logits
        targets = labels[:, labels.shape[1] - keep + 1 :]  # (B, keep - 1): what the kept positions predict
        lm_loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX
        )
        return self._with_contrast({"loss": lm_loss, "lm_loss": lm_loss.detach()}, item_ids)

    def distill_loss(self, scores: torch.Tensor, user_vectors: torch.Tensor | None) -> torch.Tensor:
        """KL(teacher || LLM) over the catalog, batch mean, times the squared temperature: the teacher's scores are
        each row's user state (``user_vectors [B, D]``, one per row) dotted with the ``id`` item vectors."""
        items = self.prompter.items
        if user_vectors is None or len(user_vectors) != len(scores) or items is None or items.kind != "id":
            raise LlmrecError("distillation needs one encoder user state per row and the encoder's id item vectors")
        teacher = user_vectors.float() @ items.vectors[1:].to(user_vectors.device).T  # (B, N)
        t = self.distill_temperature
        student, target = F.log_softmax(scores / t, dim=-1), F.log_softmax(teacher / t, dim=-1)
        return F.kl_div(student, target, log_target=True, reduction="batchmean") * t * t

    def last_state(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, H]``: the LLM's last hidden state at each prompt's end (left padding: the last position), after
        the final norm (what the LM head reads); candidates are scored by its dot product with their vectors."""
        out = self.llm(
            inputs_embeds=embeds, attention_mask=attention_mask, output_hidden_states=True, logits_to_keep=1
        )
        return out.hidden_states[-1][:, -1]

    def _with_contrast(self, result: dict[str, torch.Tensor], item_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """``result`` with RSLLM's contrastive term added to its loss (when enabled and the batch holds items)."""
        lm_loss = result["loss"]
        if self.contrastive_weight > 0 and len(item_ids) > 1:
            distinct = torch.unique(item_ids)  # (K,)
            if len(distinct) > 1:
                contrast = self.contrastive_loss(distinct)
                result["loss"] = lm_loss + self.contrastive_weight * contrast
                result["contrastive_loss"] = contrast.detach()
        return result

    def contrastive_loss(self, item_ids: torch.Tensor) -> torch.Tensor:
        """Symmetric InfoNCE between the projected vectors of ``item_ids`` and their title embeddings."""
        projected = F.normalize(self.prompter.project(item_ids).float(), dim=-1)  # (K, H)
        titles = F.normalize(self.titles[item_ids], dim=-1)  # (K, H)
        logits = projected @ titles.T / self.temperature  # (K, K)
        target = torch.arange(len(item_ids), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2

    def save(self, directory: Path | str) -> None:
        """Write the trainable parts: ``lora/`` (PEFT format) and ``projector/``."""
        directory = Path(directory)
        self.llm.save_pretrained(str(directory / "lora"))
        if self.projector is not None:
            self.projector.save(directory / "projector")

    def load_trainable(self, directory: Path | str) -> None:
        """Load the adapter and projector weights written by :meth:`save` into this module."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        directory = Path(directory)
        weights = directory / "lora" / "adapter_model.safetensors"
        if not weights.is_file():
            raise LlmrecError(f"{directory}: no adapter weights; the checkpoint is incomplete or corrupted")
        set_peft_model_state_dict(self.llm, load_file(str(weights)))
        if self.projector is not None:
            self.projector.load_state_dict(Projector.load(directory / "projector").state_dict())


def _make_trainer_class() -> type:
    from transformers import Trainer

    class RecTrainer(Trainer):
        """``Trainer`` with a projector learning rate and adapter-only checkpoints."""

        def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
            model = self.model if model is None else model
            if self.optimizer is None:
                settings = self.recipe.trainer
                projector = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("projector.")]
                lora = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("projector.")]
                groups = [{"params": lora, "lr": settings.lr}]
                if projector:
                    groups.append({"params": projector, "lr": settings.projector_lr})
                self.optimizer = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
            return self.optimizer

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            directory = Path(output_dir or self.args.output_dir)
            directory.mkdir(parents=True, exist_ok=True)
            self.accelerator.unwrap_model(self.model).save(directory)

        def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
            self.accelerator.unwrap_model(model or self.model).load_trainable(resume_from_checkpoint)

    return RecTrainer


def _clock_callback(run: Path, base: float, started: float) -> Any:
    """Records in ``metrics.json`` the training time at each checkpoint (``seconds_at_checkpoint``), so that a
    resumed run reports the time of a run that was never interrupted."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seconds = read_metrics(run).get("seconds_at_checkpoint", {})
            seconds[f"checkpoint-{state.global_step}"] = round(base + time.perf_counter() - started, 1)
            update_metrics(run, {"seconds_at_checkpoint": seconds})

    return Clock()


def _log_callback(run: Path) -> Any:
    from transformers import TrainerCallback

    class JsonLog(TrainerCallback):
        """Appends every log entry of the main process to ``log.jsonl``."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if state.is_world_process_zero and logs:
                entry = {"step": state.global_step, **logs}
                with (run / "log.jsonl").open("a") as handle:
                    handle.write(json.dumps(entry) + "\n")

    return JsonLog()


def _world_size() -> int:
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def build_model(prepared: Prepared, recipe: Recipe) -> tuple[RecommenderLM, Any]:
    """The base LLM wrapped with a fresh LoRA adapter, a fresh projector (seeded), and its tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(recipe.trainer.seed)
    tokenizer = AutoTokenizer.from_pretrained(prepared.base_model)
    llm = AutoModelForCausalLM.from_pretrained(prepared.base_model, dtype=torch.float32)
    lora = recipe.lora
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.targets, task_type="CAUSAL_LM"
    )
    try:
        llm = get_peft_model(llm, config)
    except ValueError as error:
        raise LlmrecError(f"lora targets {lora.targets} do not fit {prepared.base_model}: {error}") from None
    prompter = HybridPrompter(tokenizer, llm.get_input_embeddings())
    titles = None
    if prepared.items is not None:
        projector = build_projector(recipe.projector)
        prompter = HybridPrompter(tokenizer, llm.get_input_embeddings(), projector, prepared.items)
        if recipe.curriculum.kind == "rsllm":
            titles = title_vectors(tokenizer, llm.get_input_embeddings(), prepared.dataset.titles.tolist())
    weight = recipe.curriculum.contrastive_weight if recipe.curriculum.kind == "rsllm" else 0.0
    settings = recipe.trainer
    model = RecommenderLM(
        llm,
        prompter,
        titles,
        weight,
        recipe.curriculum.temperature,
        settings.item_loss,
        settings.distill,
        settings.distill_temperature,
    )
    return model, tokenizer


def _examples(prepared: Prepared, recipe: Recipe) -> tuple[list[TaskExample], list[TaskExample] | None]:
    from dataclasses import replace

    text_task: TaskConfig = replace(recipe.task, item_text="title", template=None, user_vector=False)
    text = build_examples(prepared.dataset, prepared.split, "train", text_task)
    hybrid = None
    if recipe.uses_items:
        states = UserStates(recipe.encoder, prepared.dataset) if recipe.task.user_vector and recipe.encoder else None
        if states is not None and recipe.trainer.distill > 0 and states.encoder.item_bias() is not None:
            raise LlmrecError(
                f"{recipe.encoder}: trainer.distill's teacher is the user state dotted with the item embeddings, but "
                f"this {states.encoder.name} also adds a per-item output bias to its scores; train one without "
                "output_bias, or set distill to 0"
            )
        hybrid = build_examples(prepared.dataset, prepared.split, "train", recipe.task, states)
    limit = recipe.trainer.max_examples
    if limit:
        text, hybrid = text[:limit], (hybrid[:limit] if hybrid is not None else None)
    return text, hybrid


def _last_checkpoint(run: Path) -> str | None:
    found = sorted((run / CHECKPOINTS).glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return str(found[-1]) if found else None


def train_sft(
    recipe: Recipe, out: Path | str, resume: bool = False, callbacks: list[Any] | None = None
) -> dict[str, Any]:
    """Train (or resume) an SFT run into ``out`` and return its ``metrics.json`` content.

    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (progress hooks, early interruption).
    """
    from transformers import TrainingArguments
    from transformers.utils import logging as hf_logging

    run = Path(out)
    main = int(os.environ.get("RANK", "0")) == 0  # data parallel: only the first process writes the run directory
    if resume:
        recipe, facts = read_config(run)
        if read_metrics(run).get("finished"):
            raise LlmrecError(f"{run}: this run has already finished training; evaluate it or start another --out")
    elif main and (run / "config.yaml").exists():  # the other processes may find the one the first just wrote
        raise LlmrecError(f"{run}: a run already exists here; pass --resume to continue it or choose another --out")
    prepared = prepare(recipe)
    if resume and facts.get("split_fingerprint") != prepared.split.fingerprint():
        raise LlmrecError(f"{run}: the dataset changed since this run started (split fingerprint differs)")
    torch.set_num_threads(resolve_threads(recipe.trainer.threads, _world_size()))
    text, hybrid = _examples(prepared, recipe)
    if not text:
        raise LlmrecError(f"dataset {prepared.dataset.name} gives no training examples (every user is too short)")
    settings = recipe.trainer
    per_step = settings.batch_size * settings.grad_accum * _world_size()
    steps = settings.max_steps or max(1, math.ceil(settings.epochs * len(text) / per_step))
    rows = training_rows(text, hybrid, recipe, steps * per_step)

    if not resume and main:
        run.mkdir(parents=True, exist_ok=True)
        facts = {
            "llmrec": __version__,
            "base_model": prepared.base_model,
            "dataset": str(prepared.dataset.path) if recipe.dataset != prepared.dataset.name else recipe.dataset,
            "split_fingerprint": prepared.split.fingerprint(),
            "items": prepared.items.describe() if prepared.items is not None else None,
            "examples": len(text),
            "steps": steps,
        }
        write_config(run, recipe, facts)
        if prepared.items is not None:
            save_items(run, prepared.items)

    model, tokenizer = build_model(prepared, recipe)
    hf_logging.set_verbosity_error()
    args = TrainingArguments(
        output_dir=str(run / CHECKPOINTS),
        num_train_epochs=1,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        learning_rate=settings.lr,
        weight_decay=settings.weight_decay,
        warmup_steps=math.ceil(settings.warmup_ratio * steps),
        lr_scheduler_type=settings.scheduler,
        max_grad_norm=settings.max_grad_norm,
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        save_total_limit=2,
        seed=settings.seed,
        data_seed=settings.seed,
        train_sampling_strategy="sequential",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        report_to=[],
        use_cpu=True,
        disable_tqdm=False,
    )
    trainer_cls = _make_trainer_class()
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=rows,
        data_collator=HybridCollator(model.prompter, padding_side="left"),
        callbacks=[_log_callback(run), *(callbacks or [])],
    )
    trainer.recipe = recipe
    checkpoint = _last_checkpoint(run) if resume else None
    previous = read_metrics(run) if main else {}
    # Training time so far: the time at the checkpoint resumed from (the steps after it are trained again).
    base = previous.get("seconds_at_checkpoint", {}).get(Path(checkpoint).name, 0.0) if checkpoint else 0.0
    started = time.perf_counter()
    if main:
        trainer.add_callback(_clock_callback(run, base, started))
    output = trainer.train(resume_from_checkpoint=checkpoint)
    wall = time.perf_counter() - started
    if not main:
        return {}
    model.save(run)
    previous = read_metrics(run)
    return update_metrics(
        run,
        {
            "finished": True,
            "train_loss": float(output.training_loss),
            "steps": int(trainer.state.global_step),
            "examples": len(text),
            "rows_trained": steps * per_step,
            "train_seconds": round(base + wall, 1),
            "peak_rss_mib": round(max(previous.get("peak_rss_mib", 0.0), peak_rss_mib()), 1),
            "processes": _world_size(),
            "threads": torch.get_num_threads(),  # per process: with processes, what train_seconds was measured on
            "resumed": bool(resume),
        },
    )
