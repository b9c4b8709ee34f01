"""Recommendation rewards for RL, as TRL reward functions: ``f(prompts, completions, **columns) -> list[float]``.

A completion has the recipes' structure: a rationale, then one ``Answer:`` line (the answer after the marker, on
its line or the next); an answer lists one or more entries separated by ``;`` (item titles, or a search query).
The dataset's columns arrive as keyword arguments: ``target`` (the next item's id), ``future`` (the items after
it, in order), ``history`` (the user's items) and ``candidates`` (the items the prompt offered).

- :class:`FormatReward` — Rec-R1's gate: a small bonus for a well-formed completion, a penalty otherwise; every
  task reward below is 0 for a malformed completion, so only well-formed ones earn it.
- :class:`ValidityReward` — RecLM-gen's penalties: an answer that is no catalog item, not one of the candidates,
  already in the user's history, or repeated.
- :class:`RankReward` — ``1 / log2(rank + 1)`` of the target in the answer list (a hit for a single answer).
- :class:`MSRAReward` — REG4Rec's multi-step reward: the user's next ``horizon`` items after the target count too,
  the ``k``-th discounted by ``gamma ** k``.
- :class:`ConsistencyReward` — REG4Rec's consistency: the share of the other completions of the same prompt that
  reach the same answer.
- :class:`BlackBoxReward` — Rec-R1: the answer is a query to a frozen recommender (BM25, dense, an encoder:
  :mod:`llmrec.catalog.retrievers`) over the whole catalog, and the reward is NDCG@k of the target (plus the
  discounted NDCG of the future items).

Each is a small picklable class with ``__name__`` set (TRL logs every reward by it, each step).
"""

from __future__ import annotations

import math
from typing import Any

from llmrec.catalog.catalog import Catalog
from llmrec.inference.answers import MARKER, completion_text, parse_answer

EXACT = ("exact", "normalised")  # how an entry may resolve to count as naming an item


def _prompt_items(columns: dict[str, Any], row: int) -> tuple[list[int], set[int]]:
    """The ``row``-th prompt's candidates (empty: it offered none) and the user's history, from the columns."""
    candidates = list(columns["candidates"][row]) if columns.get("candidates") else []
    history = set(columns["history"][row]) if columns.get("history") else set()
    return candidates, history


def _items(catalog: Catalog, entries: list[str], candidates: list[int], history: set[int]) -> list[int | None]:
    """Each answer entry's catalog item (``None``: no item has that title). Among items sharing a title (ML-100K
    has 22 such titles), one of the prompt's ``candidates`` wins, then one outside its ``history``: the item a
    grounded answer decoded, so a correct answer is not read as another item with the same title."""
    out: list[int | None] = []
    for entry in entries:
        found = catalog.resolve(entry, among=candidates, prefer_not=history) if candidates else None
        if found is None or found.resolved_by not in EXACT:
            found = catalog.resolve(entry, prefer_not=history)
        out.append(found.item_id if found.resolved_by in EXACT else None)
    return out


def _gain(position: int) -> float:
    """The discounted gain of a 0-based position in a list: ``1 / log2(position + 2)``."""
    return 1.0 / math.log2(position + 2)


class _Reward:
    """Base: a named, picklable reward over parsed answers."""

    __name__ = "reward"

    def __init__(self, marker: str = MARKER) -> None:
        self.marker = marker

    def answers(self, completions: list[Any]) -> list[list[str] | None]:
        return [parse_answer(completion_text(c), self.marker) for c in completions]


class FormatReward(_Reward):
    """``bonus`` for a well-formed completion (a rationale, then one answer line), ``penalty`` otherwise.

    >>> FormatReward()([None, None], ["Fits the history well.\\nAnswer: Heat", "Heat"])
    [0.1, -1.0]
    """

    __name__ = "format"

    def __init__(self, marker: str = MARKER, bonus: float = 0.1, penalty: float = -1.0) -> None:
        super().__init__(marker)
        self.bonus, self.penalty = bonus, penalty

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        return [self.bonus if a is not None else self.penalty for a in self.answers(completions)]


class ValidityReward(_Reward):
    """The sum of penalties of an answer's entries: ``unknown`` (no catalog item), ``not_candidate`` (not one of the
    prompt's ``candidates``), ``in_history``, ``repeated``; 0 for a valid answer or a malformed completion."""

    __name__ = "validity"

    def __init__(
        self,
        catalog: Catalog,
        marker: str = MARKER,
        unknown: float = -1.0,
        not_candidate: float = -0.5,
        in_history: float = -0.5,
        repeated: float = -0.5,
    ) -> None:
        super().__init__(marker)
        self.catalog = catalog
        self.unknown, self.not_candidate, self.in_history, self.repeated = unknown, not_candidate, in_history, repeated

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        out = []
        for n, answer in enumerate(self.answers(completions)):
            if answer is None:
                out.append(0.0)
                continue
            listed, history = _prompt_items(columns, n)
            candidates = set(listed) or None  # an empty list: the prompt offered no candidates
            penalty, seen = 0.0, set()
            for item in _items(self.catalog, answer, listed, history):
                if item is None:
                    penalty += self.unknown
                    continue
                if candidates is not None and item not in candidates:
                    penalty += self.not_candidate
                if item in history:
                    penalty += self.in_history
                if item in seen:
                    penalty += self.repeated
                seen.add(item)
            out.append(penalty)
        return out


class RankReward(_Reward):
    """``1 / log2(rank + 1)`` of the target at 1-based ``rank`` in the answer list; 0 when absent or malformed."""

    __name__ = "rank"

    def __init__(self, catalog: Catalog, marker: str = MARKER) -> None:
        super().__init__(marker)
        self.catalog = catalog

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        out = []
        for n, (answer, target) in enumerate(zip(self.answers(completions), columns["target"], strict=True)):
            items = _items(self.catalog, answer, *_prompt_items(columns, n)) if answer is not None else []
            out.append(_gain(items.index(target)) if target in items else 0.0)
        return out


class MSRAReward(_Reward):
    """The user's next ``horizon`` items after the target (column ``future``) found in the answer list: the
    ``k``-th (from 1) at 1-based rank ``r`` earns ``gamma ** k / log2(r + 1)``; 0 for a malformed completion."""

    __name__ = "msra"

    def __init__(self, catalog: Catalog, horizon: int = 3, gamma: float = 0.5, marker: str = MARKER) -> None:
        super().__init__(marker)
        self.catalog, self.horizon, self.gamma = catalog, horizon, gamma

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        out = []
        for n, (answer, future) in enumerate(zip(self.answers(completions), columns["future"], strict=True)):
            items = _items(self.catalog, answer, *_prompt_items(columns, n)) if answer is not None else []
            out.append(sum(
                self.gamma**k * _gain(items.index(item))
                for k, item in enumerate(list(future)[: self.horizon], start=1) if item in items
            ))  # fmt: skip
        return out


class ConsistencyReward(_Reward):
    """The share of the other completions of the same prompt whose (first) answer names the same catalog item; 0
    for a malformed completion, or one alone in its group."""

    __name__ = "consistency"

    def __init__(self, catalog: Catalog, marker: str = MARKER) -> None:
        super().__init__(marker)
        self.catalog = catalog

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        firsts = [
            _items(self.catalog, a[:1], *_prompt_items(columns, n))[0] if a is not None else None
            for n, a in enumerate(self.answers(completions))
        ]
        keys = [repr(p) for p in prompts]
        out = []
        for n, (key, item) in enumerate(zip(keys, firsts, strict=True)):
            others = [firsts[m] for m in range(len(keys)) if m != n and keys[m] == key]
            out.append(sum(o == item for o in others) / len(others) if item is not None and others else 0.0)
        return out


class BlackBoxReward(_Reward):
    """Rec-R1's reward: the answer as a query to a frozen ``retriever`` (``bm25``, ``dense`` or ``encoder``) over
    ``dataset``'s whole catalog; NDCG@``k`` of the target, plus ``gamma ** k``-discounted NDCG of the first
    ``horizon`` future items. ``k`` 0 grades the target wherever the retriever ranks it (for BM25, among the items
    that share a word with the query; for dense, anywhere): a reward for nearly every query, where NDCG@10 or
    @100 is zero for most. The retriever is built on the first call (so the reward pickles small)."""

    __name__ = "blackbox"

    def __init__(
        self,
        dataset: str,
        retriever: str = "bm25",
        k: int = 10,
        horizon: int = 0,
        gamma: float = 0.5,
        encoder_run: str | None = None,
        marker: str = MARKER,
    ) -> None:
        super().__init__(marker)
        if not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be a whole number, 0 for the retriever's whole ranking; got {k!r}")
        self.dataset, self.retriever, self.k = dataset, retriever, k
        self.horizon, self.gamma, self.encoder_run = horizon, gamma, encoder_run
        self._search: Any = None
        self._items = 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_search": None}

    def searcher(self) -> Any:
        if self._search is None:
            from llmrec.catalog.retrievers import make_retriever
            from llmrec.data.builtin import load_dataset

            dataset = load_dataset(self.dataset)
            self._search = make_retriever(self.retriever, dataset, self.encoder_run, "cpu")
            self._items = dataset.num_items
        return self._search

    def __call__(self, prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        answers = self.answers(completions)
        queries = ["; ".join(a) for a in answers if a is not None]
        search = self.searcher()
        found = iter(search.search(queries, self.k or self._items))  # k 0: every item the retriever ranks
        futures = columns.get("future") or [[] for _ in answers]
        out = []
        for answer, target, future in zip(answers, columns["target"], futures, strict=True):
            if answer is None:
                out.append(0.0)
                continue
            ranked = next(found)
            score = _gain(ranked.index(target)) if target in ranked else 0.0
            for k, item in enumerate(list(future)[: self.horizon], start=1):
                score += self.gamma**k * (_gain(ranked.index(item)) if item in ranked else 0.0)
            out.append(score)
        return out
