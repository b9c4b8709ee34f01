"""The model an LLM recommender trains: the base LLM with LoRA (PEFT) and the projector, as one module.

:class:`RecommenderLM` splices the projected item vectors into the token embeddings at the prompts' ``<item-emb>``
slots in its forward pass (so gradients reach the projector, and data-parallel processes each do their own
splicing), and computes the loss of the batch: the answer's tokens, or the target's score among its candidates or
the whole catalog (task output ``item``), with the distillation and contrastive terms a recipe asks for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.adapters.bundle import LORA_DIR, PROJECTOR_DIR
from llmrec.adapters.hybrid import IGNORE_INDEX, HybridPrompter
from llmrec.adapters.projectors import Projector, build_projector
from llmrec.adapters.representations import ItemTable
from llmrec.errors import LlmrecError
from llmrec.training.config import RecSFTConfig
from llmrec.training.recipe import Recipe


class RecommenderLM(nn.Module):
    """The LLM (with LoRA) and the projector as one module: ``forward(**batch) -> {"loss", "lm_loss", ...}``.

    ``batch`` is a :class:`llmrec.adapters.HybridCollator` batch with labels, best padded on the left: logits over
    the vocabulary are computed only from the earliest answer position on, which left padding puts near the end
    of every row. Batches with candidates (task output item) are scored by the last hidden state against the
    candidates' projected vectors instead (plus the task's ``prior`` times the encoder's own scores), the target
    among its candidates (``item_loss="candidates"``) or among every item (``"catalog"``); with ``distill > 0``
    the catalog loss adds the KL divergence from the encoder's own catalog distribution (the batch's user states
    dotted with the ``id`` item vectors: the teacher) to the LLM's, softened by ``distill_temperature``. With
    ``contrastive_weight > 0`` the loss adds RSLLM's alignment term over the batch's distinct items: an InfoNCE
    loss between each projected item vector and the LLM's (frozen) embedding of the item's title, both
    directions, at ``temperature``.
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
                scores = self.prompter.score_catalog(state, user_vectors)  # (B, N)
                lm_loss = F.cross_entropy(scores, columns)
                if self.distill > 0:
                    kl = self.distill_loss(scores, user_vectors)
                    result = {"loss": lm_loss + self.distill * kl, "lm_loss": lm_loss.detach()}
                    return self._with_contrast(result | {"distill_loss": kl.detach()}, item_ids)
            else:
                scores = self.prompter.score_candidates(state, candidate_ids, user_vectors)
                lm_loss = F.cross_entropy(scores, targets)
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
        if user_vectors is None or len(user_vectors) != len(scores):
            raise LlmrecError("distillation needs one encoder user state per row and the encoder's id item vectors")
        teacher = self.prompter.teacher_scores(user_vectors)  # (B, N)
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

    @property
    def config(self) -> Any:
        """The LLM's config (what TRL's trainer reads of a model)."""
        return self.llm.config

    def add_model_tags(self, tags: list[str] | str) -> None:
        """Tag the LLM, as TRL's trainer tags the models it trains."""
        self.llm.add_model_tags(tags)

    def save(self, directory: Path | str) -> None:
        """Write the trainable parts: ``lora/`` (PEFT format) and ``projector/``."""
        directory = Path(directory)
        self.llm.save_pretrained(str(directory / LORA_DIR))
        if self.projector is not None:
            self.projector.save(directory / PROJECTOR_DIR)

    def load_trainable(self, directory: Path | str) -> None:
        """Load the adapter and projector weights written by :meth:`save` into this module."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        directory = Path(directory)
        weights = directory / LORA_DIR / "adapter_model.safetensors"
        if not weights.is_file():
            raise LlmrecError(f"{directory}: no adapter weights; the checkpoint is incomplete or corrupted")
        set_peft_model_state_dict(self.llm, load_file(str(weights)))
        if self.projector is not None:
            self.projector.load_state_dict(Projector.load(directory / PROJECTOR_DIR).state_dict())


def title_vectors(tokenizer: Any, embedding: torch.nn.Module, titles: list[str]) -> torch.Tensor:
    """``[len(titles), H]``: the mean of the LLM's input embeddings of each title's tokens (no gradient)."""
    weight = embedding.weight
    rows = []
    with torch.no_grad():
        for ids in tokenizer(titles, add_special_tokens=False)["input_ids"]:
            ids = ids or [int(tokenizer.eos_token_id or 0)]
            rows.append(weight[torch.tensor(ids, dtype=torch.long)].float().mean(0))
    return torch.stack(rows)


def build_model(
    base_model: str, recipe: Recipe, config: RecSFTConfig, items: ItemTable | None, titles: list[str]
) -> tuple[RecommenderLM, Any]:
    """The base LLM wrapped with a fresh LoRA adapter, a fresh projector (seeded), and its tokenizer; ``titles``
    (every item's, in id order) feed RSLLM's contrastive term."""
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    llm = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    try:
        llm = get_peft_model(llm, recipe.lora_config())
    except ValueError as error:
        targets = recipe.lora.get("target_modules")
        raise LlmrecError(f"lora target_modules {targets} do not fit {base_model}: {error}") from None
    prompter = HybridPrompter(tokenizer, llm.get_input_embeddings())
    title_table = None
    if items is not None:
        projector = build_projector(recipe.projector)
        prompter = HybridPrompter(tokenizer, llm.get_input_embeddings(), projector, items, prior=recipe.task.prior)
        if recipe.curriculum.kind == "rsllm":
            title_table = title_vectors(tokenizer, llm.get_input_embeddings(), titles)
    weight = recipe.curriculum.contrastive_weight if recipe.curriculum.kind == "rsllm" else 0.0
    model = RecommenderLM(
        llm,
        prompter,
        title_table,
        weight,
        recipe.curriculum.temperature,
        config.item_loss,
        config.distill,
        config.distill_temperature,
    )
    return model, tokenizer
