"""Grounding: every recommendation an LLM makes resolves to a real catalog item.

A request's :class:`Grounding` restricts its answer to candidates or to the whole catalog, decoded through a
title trie (:mod:`llmrec.catalog.tries`); :func:`grounding_report` measures how grounded a set of answers is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmrec.catalog.catalog import UNRESOLVED, Catalog, Resolution
from llmrec.catalog.tries import TitleTrie, build_trie, catalog_trie
from llmrec.errors import LlmrecError


@dataclass
class Grounding:
    """A request's grounding constraint: one of ``candidates`` (item ids), or any item of the catalog.

    ``history`` (item ids the user already has) only breaks ties between items sharing a title and feeds the
    ``in_history_ratio``; ``constrain=False`` leaves decoding free and resolves the text afterwards (the
    fallback path, kept for comparison).
    """

    catalog: Catalog
    candidates: list[int] | None = None
    history: list[int] = field(default_factory=list)
    constrain: bool = True

    def __post_init__(self) -> None:
        if self.candidates is not None:
            self.candidates = [int(c) for c in self.candidates]
            if not self.candidates:
                raise LlmrecError("empty candidate list: give at least one candidate item to choose from")
            missing = [c for c in self.candidates if c not in self.catalog]
            if missing:
                raise LlmrecError(
                    f"candidates not in the catalog {self.catalog.name}: {missing[:5]}"
                    f"{' ...' if len(missing) > 5 else ''}; use item ids of that dataset"
                )

    @property
    def titles(self) -> list[str]:
        """The allowed titles, each once, in candidate order (or catalog order)."""
        if self.candidates is None:
            return list(dict.fromkeys(self.catalog.titles))
        return list(dict.fromkeys(self.catalog.title(c) for c in self.candidates))

    def resolve_title(self, title: str) -> Resolution:
        """The item of an exactly generated title (constrained decoding)."""
        ids = self.catalog.ids_with_title(title)
        if self.candidates is not None:
            ids = [i for i in ids if i in set(self.candidates)]
        if not ids:
            return UNRESOLVED
        history = set(self.history)
        fresh = [i for i in ids if i not in history]
        item = (fresh or ids)[0]
        return Resolution(item, title, "constrained")

    def resolve_text(self, text: str) -> Resolution:
        """Fallback: parse free text into one of the allowed items."""
        return self.catalog.resolve(text, among=self.candidates, prefer_not=set(self.history))

    def trie(self, tokenizer: Any) -> TitleTrie:
        """The trie a constrained answer decodes through: the cached catalog trie, or one over the candidates."""
        if self.candidates is None:
            return catalog_trie(self.catalog, tokenizer)
        return build_trie(tokenizer, self.titles)


def grounding_report(lists: list[list[int | None]], histories: list[list[int]] | None = None) -> dict[str, float]:
    """``valid_ratio``, ``duplicate_ratio`` and ``in_history_ratio`` over recommendation lists.

    Each list holds the item ids one request produced (``None`` for an answer that resolved to no item).
    Duplicates count repeats within one list; in-history counts valid items the user already interacted with.

    >>> grounding_report([[1, 2, None], [3, 3]], histories=[[2], []])
    {'valid_ratio': 0.8, 'duplicate_ratio': 0.25, 'in_history_ratio': 0.25, 'answers': 5}
    """
    answers = sum(len(items) for items in lists)
    valid = [[i for i in items if i is not None] for items in lists]
    n_valid = sum(len(v) for v in valid)
    duplicates = sum(len(v) - len(set(v)) for v in valid)
    in_history = 0
    if histories is not None:
        in_history = sum(sum(i in set(h) for i in v) for v, h in zip(valid, histories, strict=True))
    return {
        "valid_ratio": n_valid / answers if answers else 0.0,
        "duplicate_ratio": duplicates / n_valid if n_valid else 0.0,
        "in_history_ratio": in_history / n_valid if n_valid else 0.0,
        "answers": answers,
    }
