"""The catalog an answer may name, and parsing free text into one of its items.

A :class:`Catalog` holds internal item ids and their titles (ids from 1, as in a dataset). Parsing free text into
an item (exact title, then normalised title or a title contained in the text, then fuzzy) is the fallback for
unconstrained answers; constrained decoding (:mod:`llmrec.catalog.tries`) makes a grounded answer a title to begin
with. Every resolution says which path produced it.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from llmrec.errors import LlmrecError

RESOLVED_BY = ("constrained", "exact", "normalised", "contained", "fuzzy")
FUZZY_CUTOFF = 0.85


def normalise_title(text: str) -> str:
    """Lowercase, accents and punctuation dropped, a trailing or leading article and a year removed.

    >>> normalise_title("Matrix, The (1999)")
    'matrix'
    >>> normalise_title("  The   Matrix! ")
    'matrix'
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"\(\d{4}\)", " ", text)
    text = re.sub(r"[^a-z0-9]+", " ", text).strip()
    text = re.sub(r"^(the|a|an) ", "", text)
    text = re.sub(r" (the|a|an)$", "", text)
    return text


@dataclass(frozen=True)
class Resolution:
    """Which catalog item a text resolved to, and how (``None`` fields when it did not resolve)."""

    item_id: int | None
    title: str | None
    resolved_by: str | None


UNRESOLVED = Resolution(None, None, None)


class Catalog:
    """The items an answer may name: internal item ids and their titles (ids from 1, as in a Dataset)."""

    def __init__(self, item_ids: np.ndarray | list[int], titles: np.ndarray | list[str], name: str = "catalog"):
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.titles = [str(t) for t in titles]
        if len(self.item_ids) != len(self.titles):
            raise LlmrecError(f"{name}: {len(self.item_ids)} item ids but {len(self.titles)} titles")
        if not len(self.titles):
            raise LlmrecError(f"{name}: the catalog is empty")
        self.name = name
        self._title_of = dict(zip(self.item_ids.tolist(), self.titles, strict=True))

    @classmethod
    def from_dataset(cls, dataset: Any) -> Catalog:
        """Every item of a ``llmrec.data.Dataset`` with its title."""
        items = dataset.items.sort_values("item_id")
        return cls(items["item_id"].to_numpy(), items["title"].astype(str).to_numpy(), name=dataset.name)

    def __len__(self) -> int:
        return len(self.titles)

    def title(self, item_id: int) -> str:
        """The title of an item id; unknown ids are an error naming the valid range."""
        try:
            return self._title_of[int(item_id)]
        except KeyError:
            raise LlmrecError(f"{self.name}: no item with id {item_id} in the catalog") from None

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, int | np.integer) and int(item_id) in self._title_of

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over ids and titles: tries and caches built on this catalog are keyed by it."""
        digest = hashlib.sha256()
        for item_id, title in zip(self.item_ids.tolist(), self.titles, strict=True):
            digest.update(f"{item_id}\t{title}\n".encode())
        return digest.hexdigest()

    @cached_property
    def _by_title(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for item_id, title in zip(self.item_ids.tolist(), self.titles, strict=True):
            out.setdefault(title, []).append(item_id)
        return out

    @cached_property
    def _by_normalised(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for item_id, title in zip(self.item_ids.tolist(), self.titles, strict=True):
            out.setdefault(normalise_title(title), []).append(item_id)
        out.pop("", None)
        return out

    def ids_with_title(self, title: str) -> list[int]:
        """Item ids whose title is exactly ``title`` (several when the catalog repeats a title)."""
        return list(self._by_title.get(title, []))

    def resolve(
        self, text: str, among: list[int] | None = None, prefer_not: set[int] | frozenset[int] = frozenset()
    ) -> Resolution:
        """Parse a free-text answer into an item: exact title, then normalised title, then the longest title the
        text contains (``contained``: "I'd pick The Lion King." names Lion King, The), then fuzzy.

        ``among`` restricts the answer to those item ids (a candidate list); among several items with the same
        title, one not in ``prefer_not`` (the user's history) wins.
        """
        allowed = None if among is None else set(int(i) for i in among)
        text = text.strip().strip("\"'").strip()

        def pick(ids: list[int]) -> int | None:
            ids = [i for i in ids if allowed is None or i in allowed]
            fresh = [i for i in ids if i not in prefer_not]
            return (fresh or ids or [None])[0]

        if (item := pick(self._by_title.get(text, []))) is not None:
            return Resolution(item, self.title(item), "exact")
        norm = normalise_title(text)
        if not norm:
            return UNRESOLVED
        if (item := pick(self._by_normalised.get(norm, []))) is not None:
            return Resolution(item, self.title(item), "normalised")
        table = self._by_normalised if allowed is None else self._normalised_among(allowed)
        padded = f" {norm} "
        contained = [key for key in table if f" {key} " in padded]
        if contained and (item := pick(table[max(contained, key=len)])) is not None:
            return Resolution(item, self.title(item), "contained")
        close = difflib.get_close_matches(norm, list(table), n=1, cutoff=FUZZY_CUTOFF)
        if close and (item := pick(table[close[0]])) is not None:
            return Resolution(item, self.title(item), "fuzzy")
        return UNRESOLVED

    def _normalised_among(self, allowed: set[int]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for item_id in allowed:
            if item_id in self._title_of:
                out.setdefault(normalise_title(self._title_of[item_id]), []).append(item_id)
        out.pop("", None)
        return out
