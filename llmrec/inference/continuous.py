"""Iteration-level batching for the transformers engine: rows join and leave a running batch between decoding steps.

``generate`` answers a batch whole, so a request that arrives while a batch decodes waits for all of it (on a
CPU, seconds for a batch of chat replies). :class:`DecodingBatch` runs its own decoding loop
instead: a newcomer's prompt is prefilled alone, its key/value cache is left-padded to the running batch's
length and joined to it, and from the next step on it decodes with the rest; a row that ends leaves the batch at
once. A newcomer thus waits one step and its own prefill, not a whole batch.

It serves the plain requests a chat server sends (chat ``messages`` or a ``prompt``; greedy or sampled; stop
strings; grounding resolved after decoding). Requests that need the engine's full ``generate`` (constrained
decoding, ``prompt_embeds``, LoRA adapters, several answers, top log-probabilities) are not accepted here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from llmrec.inference.engine import Request, Result, SamplingConfig
from llmrec.inference.prompting import eos_ids

RowDone = Callable[[Result | None, BaseException | None], None]


class StreamClosed(Exception):
    """Raised by a text sink whose reader has gone: its row stops decoding (the other rows go on)."""


def supports(model: Any) -> bool:
    """Whether ``model``'s key/value cache can be joined and trimmed row by row: every layer a plain dynamic one
    (a sliding-window layer counts the positions it has seen, which joining would not update)."""
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)


def accepts(request: Request, params: SamplingConfig) -> bool:
    """Whether a :class:`DecodingBatch` can answer ``request`` (see the module docstring)."""
    return (
        request.prompt_embeds is None
        and request.lora is None
        and request.json_schema is None
        and (request.grounding is None or not request.grounding.constrain)
        and params.n == 1
        and params.logprobs is None
    )


@dataclass
class _Row:
    item: dict[str, Any]  # the engine's prepared request: prompt ids, max_new, grounding
    params: SamplingConfig
    on_text: Callable[[str], None] | None
    done: RowDone
    generator: torch.Generator | None
    error: BaseException | None = None  # its sink raised: the row ends with this error
    tokens: list[int] = field(default_factory=list)
    chosen: list[float] = field(default_factory=list)  # raw log-prob of each token, as the engine reports it
    shown: int = 0  # characters of text handed to on_text


class DecodingBatch:
    """The running batch of an :class:`~llmrec.inference.hf.HFEngine` (see the module docstring).

    :meth:`add` prefills new rows and joins them to the batch; :meth:`step` decodes one token for every row and
    finishes the rows that end, calling each row's ``done(result, error)``. Not thread-safe: one worker drives it.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.rows: list[_Row] = []
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros(0, 0, dtype=torch.long)  # (B, T): 1 where the cache holds a real position
        self.pending = torch.zeros(0, dtype=torch.long)  # (B,): each row's last token, not yet fed to the model
        self.eos = eos_ids(engine.tokenizer, engine.hf_model)

    @property
    def active(self) -> int:
        """Rows decoding."""
        return len(self.rows)

    def add(
        self,
        requests: list[Request],
        params: SamplingConfig,
        on_text: list[Callable[[str], None] | None],
        done: list[RowDone],
    ) -> None:
        """Prefill ``requests`` (all :func:`accepts`-ed) and join them to the batch; their first tokens are
        sampled (and streamed) here. A request the engine rejects, or a failed prefill, raises before any row
        joins."""
        items = [self.engine._prepare(request, params) for request in requests]
        rows = [
            _Row(item, params, sink, finish, _generator(params, index))
            for index, (item, sink, finish) in enumerate(zip(items, on_text, done, strict=True))
        ]
        width = max(len(item["ids"]) for item in items)
        ids = torch.full((len(items), width), int(self.engine.tokenizer.pad_token_id), dtype=torch.long)
        mask = torch.zeros(len(items), width, dtype=torch.long)
        for row, item in enumerate(items):
            ids[row, width - len(item["ids"]) :] = torch.tensor(item["ids"], dtype=torch.long)
            mask[row, width - len(item["ids"]) :] = 1
        cache = DynamicCache(config=self.engine.hf_model.config)
        logits = self._forward(ids, mask, _positions(mask), cache)  # (N, V)
        tokens = self._choose(rows, logits)
        self._join(rows, cache, mask)
        self._apply(rows, tokens, logits, first=len(self.rows) - len(rows))

    def step(self) -> None:
        """Decode one token for every row; rows that end leave the batch."""
        if not self.rows:
            return
        positions = self.mask.sum(-1, keepdim=True)  # (B, 1): the pending token follows the row's real ones
        self.mask = torch.cat([self.mask, torch.ones(len(self.rows), 1, dtype=torch.long)], dim=1)
        logits = self._forward(self.pending[:, None], self.mask, positions, self.cache)
        self._apply(self.rows, self._choose(self.rows, logits), logits, first=0)

    def fail(self, error: BaseException) -> None:
        """End every row with ``error`` (the model raised mid-batch) and empty the batch."""
        rows, self.rows, self.cache = self.rows, [], None
        self.mask, self.pending = self.mask[:0], self.pending[:0]
        for row in rows:
            row.done(None, error)

    # -- internals -------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: DynamicCache
    ) -> torch.Tensor:
        device = self.engine.device
        with self.engine._adapter_context(""):  # the base model, whatever adapters other calls loaded
            out = self.engine.hf_model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        return out.logits[:, -1].float().cpu()  # (B, V)

    def _join(self, rows: list[_Row], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append ``rows`` (their prefilled ``cache`` and ``mask``) to the batch, left-padding the shorter side."""
        if self.cache is None or not self.rows:
            self.rows, self.cache, self.mask = list(rows), cache, mask
            self.pending = torch.zeros(len(rows), dtype=torch.long)
            return
        width = max(self.mask.shape[1], mask.shape[1])
        for old, new in zip(self.cache.layers, cache.layers, strict=True):
            old.keys = torch.cat([_pad_left(old.keys, width), _pad_left(new.keys, width)])  # (B + N, heads, T, d)
            old.values = torch.cat([_pad_left(old.values, width), _pad_left(new.values, width)])
        masks = [F.pad(m, (width - m.shape[1], 0)) for m in (self.mask, mask)]
        self.mask = torch.cat(masks)
        self.pending = torch.cat([self.pending, torch.zeros(len(rows), dtype=torch.long)])
        self.rows.extend(rows)

    def _choose(self, rows: list[_Row], logits: torch.Tensor) -> list[int]:
        """Each row's next token from its ``(V,)`` logits (before any state changes: a failure leaves the batch
        as it was)."""
        return [_sample(logits[i], row.params, row.generator) for i, row in enumerate(rows)]

    def _apply(self, rows: list[_Row], tokens: list[int], logits: torch.Tensor, first: int) -> None:
        """Append each row's token (row ``i`` is batch row ``first + i``), stream its text, and finish the rows
        that end."""
        logprobs = logits.log_softmax(-1)  # (N, V): raw, as the engine reports sequence log-probs
        ended = []
        for i, (row, token) in enumerate(zip(rows, tokens, strict=True)):
            row.tokens.append(token)
            row.chosen.append(float(logprobs[i, token]))
            self.pending[first + i] = token
            if self._emit(row) or token in self.eos or len(row.tokens) >= row.item["max_new"]:
                ended.append(first + i)
        if ended:
            self._finish(ended)

    def _text(self, row: _Row) -> tuple[str, int | None]:
        """The row's text so far and where its first stop string starts (None: no stop string in it)."""
        text = self.engine.tokenizer.decode([t for t in row.tokens if t not in self.eos], skip_special_tokens=True)
        cuts = [text.find(s) for s in row.params.stop or [] if s in text]
        return text, min(cuts) if cuts else None

    def _send(self, row: _Row, text: str, end: int) -> None:
        """Hand ``text[shown:end]`` to the row's sink; a sink that raises ends its row alone."""
        if row.on_text is None or end <= row.shown or row.error is not None:
            return
        try:
            row.on_text(text[row.shown : end])
        except BaseException as error:  # noqa: BLE001 - this row's reader failed or left; the others go on
            row.error = error
        row.shown = end

    def _emit(self, row: _Row) -> bool:
        """Stream the row's new text (holding back what could start a stop string); True when the row ends here:
        a stop string appeared, or its sink failed."""
        text, cut = self._text(row)
        if cut is not None:
            self._send(row, text, cut)
            return True
        if not text.endswith("\ufffd"):  # else a multi-byte character continues in the next token
            self._send(row, text, len(text) - max((len(s) - 1 for s in row.params.stop or []), default=0))
        return row.error is not None

    def _finish(self, indices: list[int]) -> None:
        """Take the rows at ``indices`` out of the batch, then answer each (its result, or its error)."""
        gone = set(indices)
        keep = [i for i in range(len(self.rows)) if i not in gone]
        if keep:
            index = torch.tensor(keep, dtype=torch.long)
            self.cache.batch_select_indices(index.to(self.engine.device))
            mask = self.mask[index]
            start = int((mask.sum(0) > 0).long().argmax())  # leading columns that are padding in every row
            if start:
                for layer in self.cache.layers:
                    layer.keys, layer.values = layer.keys[:, :, start:], layer.values[:, :, start:]
            self.mask, self.pending = mask[:, start:], self.pending[index]
        else:
            self.cache, self.mask, self.pending = None, self.mask[:0, :0], self.pending[:0]
        finished = [self.rows[i] for i in indices]
        self.rows = [self.rows[i] for i in keep]  # only now: if the cache could not be cut, fail() reaches all
        for row in finished:
            try:
                text, cut = self._text(row)
                self._send(row, text, len(text) if cut is None else cut)  # the held-back tail
                if row.error is not None:
                    raise row.error
                result = self._result(row)
            except BaseException as error:  # noqa: BLE001 - the row's caller gets it
                row.done(None, error)
            else:
                row.done(result, None)

    def _result(self, row: _Row) -> Result:
        completion = self.engine._completion(
            torch.tensor(row.tokens), torch.tensor(row.chosen), None, self.eos, row.params, row.item
        )
        warns = [row.item["warn"]] if row.item.get("warn") else []
        return Result([completion], prompt_tokens=row.item["length"], warnings=warns)


def _generator(params: SamplingConfig, index: int) -> torch.Generator | None:
    """The random stream of a call's sampled row ``index``: drawn from the call's seed and the row's place in it,
    so its answer does not depend on which other calls share the batch, and copies of one prompt differ."""
    if params.greedy:
        return None
    generator = torch.Generator()
    generator.manual_seed(params.seed * 1_000_003 + index)
    return generator


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: each real token's index among its row's real tokens."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _pad_left(states: torch.Tensor, width: int) -> torch.Tensor:
    """``(B, heads, T, d)`` states padded with zeros on the left to ``width`` positions (masked out)."""
    return F.pad(states, (0, 0, width - states.shape[2], 0))


def _sample(logits: torch.Tensor, params: SamplingConfig, generator: torch.Generator | None) -> int:
    """The next token from one row's ``(V,)`` logits: argmax, or temperature then nucleus sampling."""
    if params.greedy:
        return int(logits.argmax())
    probs = (logits / params.temperature).softmax(-1)
    if params.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs >= params.top_p  # tokens after the nucleus is full
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))
