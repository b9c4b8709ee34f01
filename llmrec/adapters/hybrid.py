"""Hybrid prompts: prompt text with ``<item-emb>`` placeholders, each replaced by one projected item vector.

A prompt may also hold ``<user-emb>`` placeholders, each replaced by a vector given with the prompt (the encoder's
user state after the history, which lives in the space of its item embeddings), through the same projector.

A prompt (chat messages, rendered with the model's chat template and a generation prompt exactly as the engines
render them, or plain text) is split at the placeholders and each piece tokenized on its own, so every
placeholder becomes exactly one position. :class:`HybridPrompter` turns ``(prompt, item_ids)`` into
``inputs_embeds [L, H_llm]``: the LLM's token embeddings, with ``projector(items[item_id])`` at the placeholder
positions (in placeholder order). The result goes to the hf engine or vLLM as ``prompt_embeds``;
:class:`HybridCollator` pads a batch of their token ids, with answer labels, for training, and
:meth:`HybridPrompter.embed_batch` splices the vectors into it inside the model's forward pass, where gradients
flow from the embeddings into the projector.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llmrec.adapters.projectors import Projector
from llmrec.adapters.representations import ItemTable
from llmrec.errors import LlmrecError

PLACEHOLDER = "<item-emb>"
USER_PLACEHOLDER = "<user-emb>"
IGNORE_INDEX = -100
Prompt = str | list[dict[str, str]]


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The chat template applied to ``messages`` as text, the way the engines render requests: with a generation
    prompt, or, when the last message is the assistant's, continuing it (a partial answer)."""
    if not messages or not all(isinstance(m, dict) and "role" in m for m in messages):
        raise LlmrecError("messages must be a non-empty list of {'role': ..., 'content': ...} objects")
    if not getattr(tokenizer, "chat_template", None):
        raise LlmrecError("this model has no chat template: send a plain prompt instead of messages")
    partial = messages[-1]["role"] == "assistant"
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=not partial, continue_final_message=partial, tokenize=False
    )


@dataclass(frozen=True)
class HybridTokens:
    """A tokenized hybrid prompt: ``input_ids`` with a filler id at each position in ``slots``, where the vectors
    of ``item_ids`` (same order) go, and at each position in ``user_slots``, where ``user_vectors`` go."""

    input_ids: list[int]
    slots: list[int]
    item_ids: list[int]
    user_slots: tuple[int, ...] = ()
    user_vectors: tuple[tuple[float, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.input_ids)


def _special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens a tokenizer puts before and after a plain text (e.g. ``[BOS]`` and ``[]``)."""
    bare = tokenizer("x", add_special_tokens=False)["input_ids"]
    full = tokenizer("x", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare) :])
    return [], []


class HybridPrompter:
    """Builds ``inputs_embeds`` for hybrid prompts of one LLM, projector and item table.

    ``embedding`` is the LLM's input-embedding module (``model.get_input_embeddings()``); the projector must map
    the item table's width to its hidden size. Without a projector and items it handles text-only prompts (no
    placeholders) the same way. ``prior`` (the task's) weighs the encoder's own scores added to the item scores.
    """

    def __init__(
        self,
        tokenizer: Any,
        embedding: nn.Module,
        projector: Projector | None = None,
        items: ItemTable | None = None,
        placeholder: str = PLACEHOLDER,
        prior: float = 0.0,
    ) -> None:
        if (projector is None) != (items is None):
            raise LlmrecError("give both a projector and an item table, or neither (text-only prompts)")
        self.tokenizer = tokenizer
        self.embedding = embedding
        self.projector = projector
        self.items = items
        self.placeholder = placeholder
        self.prior = prior
        self.hidden_size = int(embedding.weight.shape[1])
        if projector is not None and items is not None:
            projector.check_sizes(items.dim, self.hidden_size)
        self._prefix, self._suffix = _special_affixes(tokenizer)

    def tokenize(
        self, prompt: Prompt, item_ids: Sequence[int], user_vectors: Sequence[Sequence[float]] = ()
    ) -> HybridTokens:
        """Token ids of ``prompt`` with one slot per placeholder: one item id per ``<item-emb>`` and one vector
        per ``<user-emb>``, each in placeholder order."""
        chat = not isinstance(prompt, str)
        text = render_chat(self.tokenizer, prompt) if chat else prompt
        parts = re.split(f"({re.escape(self.placeholder)}|{re.escape(USER_PLACEHOLDER)})", text)
        pieces, marks = parts[::2], parts[1::2]
        item_ids = [int(i) for i in item_ids]
        users = tuple(tuple(float(x) for x in vector) for vector in user_vectors)
        for mark, given, what in (
            (self.placeholder, len(item_ids), "item id"),
            (USER_PLACEHOLDER, len(users), "vector"),
        ):
            if marks.count(mark) != given:
                raise LlmrecError(
                    f"the prompt has {marks.count(mark)} {mark} placeholder(s) but {given} {what}(s) were given; "
                    f"pass one {what} per placeholder, in placeholder order"
                )
        if users and self.projector is None:
            raise LlmrecError("this prompter has no projector (text-only); user vectors need one")
        if item_ids and self.items is None:
            raise LlmrecError("this prompter has no item table (text-only); build it with a projector and items")
        num_items = self.items.num_items if self.items is not None else 0
        bad = [i for i in item_ids if not 1 <= i <= num_items]
        if bad:
            raise LlmrecError(f"item ids {bad[:5]} are not in the catalog (ids run from 1 to {num_items})")
        # Chat text already holds its special tokens; plain text gets the tokenizer's own, as the engines do.
        ids = [] if chat else list(self._prefix)
        slots, user_slots = [], []
        encoded = self.tokenizer(pieces, add_special_tokens=False)["input_ids"]
        for index, piece in enumerate(encoded):
            if index:
                (slots if marks[index - 1] == self.placeholder else user_slots).append(len(ids))
                ids.append(0)
            ids.extend(piece)
        if not chat:
            ids.extend(self._suffix)
        return HybridTokens(ids, slots, item_ids, tuple(user_slots), users)

    def project(self, item_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Projected vectors of ``item_ids``, ``[K, H_llm]`` in the embedding's dtype and device."""
        if self.projector is None or self.items is None:
            raise LlmrecError("this prompter has no projector (text-only prompts)")
        return self.project_vectors(self.items.vectors[torch.as_tensor(item_ids, dtype=torch.long)])

    def project_vectors(self, vectors: Sequence[Sequence[float]] | torch.Tensor) -> torch.Tensor:
        """Projected ``vectors [K, D]`` (item-table width), ``[K, H_llm]`` in the embedding's dtype and device."""
        if self.projector is None:
            raise LlmrecError("this prompter has no projector (text-only prompts)")
        weight = self.embedding.weight
        device = next(self.projector.parameters()).device
        inputs = torch.as_tensor(vectors, dtype=torch.float32).to(device)  # (K, D)
        return self.projector(inputs).to(device=weight.device, dtype=weight.dtype)  # (K, H)

    def score_candidates(
        self, states: torch.Tensor, candidate_ids: torch.Tensor, user_vectors: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``[B, C]`` item scores: each LLM state ``states [B, H]`` dotted with the projected vectors of its
        candidates ``candidate_ids [B, C]`` (the item vectors as output embeddings; training and serving both),
        plus the task's ``prior`` times the encoder's own scores (:meth:`teacher_scores` of ``user_vectors``)."""
        vectors = self.project(candidate_ids.reshape(-1)).reshape(*candidate_ids.shape, -1)  # (B, C, H)
        scores = torch.einsum("bh,bch->bc", states.float(), vectors.float())  # float32 whatever the LLM's dtype
        return self._with_prior(scores, user_vectors, candidate_ids)

    def score_catalog(self, states: torch.Tensor, user_vectors: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, N]`` item scores of every catalog item (column ``i`` is item id ``i + 1``): each state
        ``states [B, H]`` dotted with every projected item vector, in float32, plus the task's ``prior`` times the
        encoder's own scores."""
        if self.items is None:
            raise LlmrecError("scoring the catalog needs item vectors")
        vectors = self.project(torch.arange(1, self.items.num_items + 1))  # (N, H)
        return self._with_prior(states.float() @ vectors.float().T, user_vectors)

    def teacher_scores(self, user_vectors: torch.Tensor, candidate_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's own scores, float32: each user state ``user_vectors [B, D]`` dotted with the ``id`` item
        embeddings of its candidates ``candidate_ids [B, C]`` (``[B, C]``), or of every item (``[B, N]``)."""
        items = self.items
        if items is None or items.kind != "id" or len(user_vectors) == 0:
            raise LlmrecError("the encoder's own scores need one user state per row and its id item vectors")
        table = items.vectors.to(user_vectors.device).float()  # (N + 1, D), row 0 padding
        if candidate_ids is None:
            return user_vectors.float() @ table[1:].T
        return torch.einsum("bd,bcd->bc", user_vectors.float(), table[candidate_ids.to(user_vectors.device)])

    def _with_prior(
        self, scores: torch.Tensor, user_vectors: torch.Tensor | None, candidate_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if not self.prior:
            return scores
        if user_vectors is None or len(user_vectors) != len(scores):
            raise LlmrecError("this task's prior adds the encoder's own scores: pass each row's user state")
        return scores + self.prior * self.teacher_scores(user_vectors, candidate_ids).to(scores.device)

    def embed(self, tokens: HybridTokens) -> torch.Tensor:
        """``inputs_embeds [L, H_llm]``: token embeddings with the projected item (and user) vectors at the slots."""
        weight = self.embedding.weight
        embeds = self.embedding(torch.tensor(tokens.input_ids, dtype=torch.long, device=weight.device))  # (L, H)
        if tokens.slots:
            slots = torch.tensor(tokens.slots, dtype=torch.long, device=weight.device)
            embeds = embeds.index_put((slots,), self.project(tokens.item_ids))  # (L, H)
        if tokens.user_slots:
            slots = torch.tensor(tokens.user_slots, dtype=torch.long, device=weight.device)
            embeds = embeds.index_put((slots,), self.project_vectors(tokens.user_vectors))  # (L, H)
        return embeds

    def __call__(
        self, prompt: Prompt, item_ids: Sequence[int], user_vectors: Sequence[Sequence[float]] = ()
    ) -> torch.Tensor:
        """``inputs_embeds [L, H_llm]`` of ``prompt`` with ``item_ids`` (and ``user_vectors``) at its
        placeholders."""
        return self.embed(self.tokenize(prompt, item_ids, user_vectors))

    def embed_batch(
        self,
        input_ids: torch.Tensor,
        item_slots: torch.Tensor,
        item_ids: torch.Tensor,
        user_slots: torch.Tensor | None = None,
        user_vectors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``inputs_embeds [B, T, H_llm]`` of a :class:`HybridCollator` batch: the token embeddings of
        ``input_ids [B, T]`` with the projected vectors of ``item_ids [S]`` at ``item_slots [S, 2]`` (and of
        ``user_vectors [U, D]`` at ``user_slots [U, 2]``)."""
        weight = self.embedding.weight
        embeds = self.embedding(input_ids.to(weight.device))  # (B, T, H)
        if len(item_ids):
            rows, positions = item_slots.to(weight.device).unbind(1)  # (S,), (S,)
            embeds = embeds.index_put((rows, positions), self.project(item_ids))  # (B, T, H)
        if user_slots is not None and user_vectors is not None and len(user_vectors):
            rows, positions = user_slots.to(weight.device).unbind(1)  # (U,), (U,)
            embeds = embeds.index_put((rows, positions), self.project_vectors(user_vectors))  # (B, T, H)
        return embeds

    def answer_ids(self, answer: str) -> list[int]:
        """Token ids of a complete answer: its tokens, then the end token (as the engines score answers)."""
        ids = list(self.tokenizer(answer, add_special_tokens=False)["input_ids"])
        eos = self.tokenizer.eos_token_id
        return ids if eos is None else [*ids, int(eos)]


class HybridCollator:
    """Pads rows ``{"prompt", "item_ids", "user_vectors"?, "answer"?}`` into token-id batches for
    :meth:`HybridPrompter.embed_batch`.

    Returns ``input_ids [B, T]`` (a filler id at the placeholder slots), ``attention_mask [B, T]``,
    ``item_slots [S, 2]`` (row and position of each placeholder in the batch), ``item_ids [S]``; when rows carry
    user vectors, ``user_slots [U, 2]`` and ``user_vectors [U, D]``; when they carry ``candidates`` and
    ``target_index`` (item-scored rank rows), ``candidate_ids [B, C]`` and ``targets [B]``; and, when the rows
    carry an ``answer``, ``labels [B, T]``: the answer's tokens and end token, ``-100`` on the prompt and the
    padding. A row without placeholders is a text-only prompt. Pad on the ``right`` for training and on the
    ``left`` for generation. Only token ids are built here; the vectors are spliced in by the model's forward
    pass, so data-loader workers and data-parallel processes may collate.
    """

    def __init__(self, prompter: HybridPrompter, padding_side: str = "right") -> None:
        if padding_side not in ("left", "right"):
            raise LlmrecError(f"padding_side must be left or right, got {padding_side!r}")
        self.prompter = prompter
        self.padding_side = padding_side
        pad = prompter.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else prompter.tokenizer.eos_token_id or 0)

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate ``rows`` (all with an ``answer``, or none) into one padded batch."""
        if not rows:
            raise LlmrecError("cannot collate an empty batch")
        with_answers = [row.get("answer") is not None for row in rows]
        if any(with_answers) and not all(with_answers):
            raise LlmrecError("either every row of a batch has an answer or none has")
        tokenized = []
        for row in rows:
            tokens = self.prompter.tokenize(row["prompt"], row.get("item_ids") or [], row.get("user_vectors") or [])
            answer = self.prompter.answer_ids(row["answer"]) if row.get("answer") is not None else []
            tokenized.append((tokens, answer))
        width = max(len(tokens) + len(answer) for tokens, answer in tokenized)
        ids, masks, labels, slots, items, user_slots, users = [], [], [], [], [], [], []
        for row, (tokens, answer) in enumerate(tokenized):
            length = len(tokens) + len(answer)
            left = width - length if self.padding_side == "left" else 0
            right = width - length - left
            ids.append([self.pad_id] * left + tokens.input_ids + answer + [self.pad_id] * right)
            masks.append([0] * left + [1] * length + [0] * right)
            labels.append([IGNORE_INDEX] * (left + len(tokens)) + answer + [IGNORE_INDEX] * right)
            slots.extend([row, left + slot] for slot in tokens.slots)
            items.extend(tokens.item_ids)
            user_slots.extend([row, left + slot] for slot in tokens.user_slots)
            users.extend(tokens.user_vectors)
        out = {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(masks, dtype=torch.long),
            "item_slots": torch.tensor(slots, dtype=torch.long).reshape(-1, 2),
            "item_ids": torch.tensor(items, dtype=torch.long),
        }
        if users:
            out["user_slots"] = torch.tensor(user_slots, dtype=torch.long)
            out["user_vectors"] = torch.tensor(users, dtype=torch.float32)
        if all("target_index" in row for row in rows):
            out["candidate_ids"] = torch.tensor([row["candidates"] for row in rows], dtype=torch.long)
            out["targets"] = torch.tensor([row["target_index"] for row in rows], dtype=torch.long)
        if all(with_answers):
            out["labels"] = torch.tensor(labels, dtype=torch.long)
        return out
