"""Constrained decoding on transformers: per generation row, a title trie (grounding) or a JSON-schema grammar.

Both are logits processors over the expanded generation rows (``n`` per request); a row without a constraint
decodes freely. The JSON grammar comes from xgrammar (the structured-output library vLLM uses), compiled once per
schema and tokenizer, so an answer decoded under it is JSON that the schema accepts, unless it runs out of tokens.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from transformers import LogitsProcessor

from llmrec.catalog.tries import TitleTrie


class TrieLogitsProcessor(LogitsProcessor):
    """Masks every token a row's title trie does not allow next (rows without a trie decode freely).

    Rows are the expanded generation rows (``n`` per request). Once a row's title is complete only its end
    token is left, and after that the row is finished, so it is left alone.
    """

    def __init__(self, tries: list[TitleTrie | None]) -> None:
        self.tries = tries
        self.states: list[Any] = [t.root if t is not None else None for t in tries]
        self.start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        elif input_ids.shape[1] > self.start:
            last = input_ids[:, -1].tolist()
            for row, trie in enumerate(self.tries):
                if trie is not None and self.states[row] is not None:
                    self.states[row] = trie.advance(self.states[row], last[row])
        mask = torch.zeros_like(scores, dtype=torch.bool)
        constrained = False
        for row, trie in enumerate(self.tries):
            if trie is None or self.states[row] is None:
                continue
            allowed = trie.allowed(self.states[row])
            if len(allowed):
                constrained = True
                mask[row] = True
                mask[row, torch.from_numpy(allowed)] = False
        return scores.masked_fill(mask, float("-inf")) if constrained else scores


class JsonGrammars:
    """JSON-schema grammars compiled for one tokenizer (xgrammar), cached by schema."""

    def __init__(self, tokenizer: Any, vocab_size: int) -> None:
        import xgrammar

        self.vocab_size = vocab_size
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size)
        self.compiler = xgrammar.GrammarCompiler(info)
        self._compiled: dict[str, Any] = {}

    def compile(self, schema: dict[str, Any]) -> Any:
        """The compiled grammar of ``schema`` (compact JSON: no free whitespace for a model to wander in)."""
        key = json.dumps(schema, sort_keys=True)
        if key not in self._compiled:  # compiled in the schema's own order: properties come in that order
            self._compiled[key] = self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        return self._compiled[key]


class GrammarLogitsProcessor(LogitsProcessor):
    """Masks every token a row's grammar does not allow next (rows without a grammar decode freely); a row whose
    grammar has finished (its end token accepted) is left alone."""

    def __init__(self, grammars: list[Any | None], vocab_size: int) -> None:
        import xgrammar

        self.xgrammar = xgrammar
        self.matchers = [xgrammar.GrammarMatcher(g) if g is not None else None for g in grammars]
        self.rows = [row for row, matcher in enumerate(self.matchers) if matcher is not None]
        self.bitmask = xgrammar.allocate_token_bitmask(len(grammars), vocab_size)
        self.start: int | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        elif input_ids.shape[1] > self.start:
            last = input_ids[:, -1].tolist()
            for row in self.rows:
                matcher = self.matchers[row]
                if not matcher.is_terminated():
                    matcher.accept_token(last[row])
        active = [row for row in self.rows if not self.matchers[row].is_terminated()]
        if not active:
            return scores
        for row in active:
            self.matchers[row].fill_next_token_bitmask(self.bitmask, row)
        masked = scores.float().cpu()  # xgrammar masks logits on the CPU or CUDA; float32 either way
        self.xgrammar.apply_token_bitmask_inplace(masked, self.bitmask, vocab_size=scores.shape[-1], indices=active)
        return masked.to(device=scores.device, dtype=scores.dtype)
