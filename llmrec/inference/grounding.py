"""Grounding: every recommendation an LLM makes resolves to a real catalog item.

Constrained decoding does the work: a ``TitleTrie`` over the token sequences of the allowed titles (the
candidates of one request, or the whole catalog) tells a logits processor which tokens may come next, so a
constrained answer *is* a title, and its tokens identify the item. The trie is a lexicographically sorted
``[T, D]`` array of token ids; the titles sharing a prefix are one contiguous block of rows, so each decoding
step is a binary search inside the block and the allowed next tokens are the distinct values of one column of
it. That keeps a 100k-title catalog to a few MB, built once and cached on disk.

Parsing free text into items (exact title, then normalised title or a title contained in the text, then fuzzy)
is only the fallback for unconstrained answers; every resolution says which path produced it.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import re
import unicodedata
import weakref
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.errors import LlmrecError
from llmrec.paths import llmrec_home

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


class TitleTrie:
    """Token-level prefix trie over titles, stored as a sorted ``[T, D]`` array (``-1`` pads short rows).

    Each row is one distinct title's tokens followed by ``end_id``. A decoding state is ``(depth, lo, hi)``:
    the rows ``lo:hi`` share the ``depth`` tokens generated so far.

    >>> trie = TitleTrie([[5, 6], [5, 7, 8], [9]], keys=["a", "b", "c"], end_id=0)
    >>> trie.allowed(trie.root).tolist()
    [5, 9]
    >>> state = trie.advance(trie.root, 5)
    >>> trie.allowed(state).tolist()
    [6, 7]
    >>> trie.lookup([5, 7, 8, 0]), trie.lookup([5, 7]), trie.lookup([4])
    ('b', None, None)
    """

    def __init__(self, sequences: list[list[int]], keys: list[str], end_id: int) -> None:
        if not sequences:
            raise LlmrecError("cannot build a title trie over no titles")
        unique: dict[tuple[int, ...], str] = {}
        for seq, key in zip(sequences, keys, strict=True):
            unique.setdefault((*(int(t) for t in seq), int(end_id)), key)
        depth = max(len(seq) for seq in unique)
        rows = np.full((len(unique), depth), -1, dtype=np.int32)
        for r, seq in enumerate(unique):
            rows[r, : len(seq)] = seq
        order = np.lexsort(rows.T[::-1])
        self.rows = rows[order]
        listed = list(unique.values())
        self.keys = [listed[i] for i in order]
        self.end_id = int(end_id)
        self.root = (0, 0, len(self.rows))
        self._root_allowed = self._distinct(self.rows[:, 0])

    @property
    def depth(self) -> int:
        """Tokens in the longest title, its end token included: the fewest new tokens a constrained answer needs."""
        return int(self.rows.shape[1])

    @staticmethod
    def _distinct(column: np.ndarray) -> np.ndarray:
        keep = np.empty(len(column), dtype=bool)
        keep[:1] = True
        np.not_equal(column[1:], column[:-1], out=keep[1:])
        values = column[keep]
        return values[values >= 0].astype(np.int64)

    def allowed(self, state: tuple[int, int, int] | None) -> np.ndarray:
        """Token ids that may follow ``state`` (empty once a title is complete or the state is dead)."""
        if state is None:
            return np.empty(0, dtype=np.int64)
        depth, lo, hi = state
        if state == self.root:
            return self._root_allowed
        if depth >= self.rows.shape[1] or hi <= lo:
            return np.empty(0, dtype=np.int64)
        return self._distinct(self.rows[lo:hi, depth])

    def advance(self, state: tuple[int, int, int] | None, token: int) -> tuple[int, int, int] | None:
        """The state after ``token``; ``None`` when no title continues that way."""
        if state is None:
            return None
        depth, lo, hi = state
        if depth >= self.rows.shape[1]:
            return None
        column = self.rows[lo:hi, depth]
        start = lo + int(np.searchsorted(column, token, side="left"))
        stop = lo + int(np.searchsorted(column, token, side="right"))
        return (depth + 1, start, stop) if stop > start else None

    def walk(self, tokens: list[int]) -> tuple[int, int, int] | None:
        """The state after a whole token prefix (``None`` if it leaves the trie)."""
        state: tuple[int, int, int] | None = self.root
        for token in tokens:
            state = self.advance(state, int(token))
            if state is None:
                return None
        return state

    def lookup(self, tokens: list[int]) -> str | None:
        """The key of the title these tokens spell out completely (end token included), else ``None``."""
        state = self.walk(tokens)
        if state is None:
            return None
        depth, lo, hi = state
        if hi - lo == 1 and depth and self.rows[lo, depth - 1] == self.end_id:
            return self.keys[lo]
        return None

    def save(self, path: Path) -> None:
        """Write the trie as one ``.npz`` file (atomic)."""
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, rows=self.rows, keys=np.array(self.keys, dtype=object), end_id=self.end_id)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TitleTrie:
        """Read a trie written by ``save``."""
        with np.load(path, allow_pickle=True) as data:
            trie = cls.__new__(cls)
            trie.rows = data["rows"]
            trie.keys = [str(k) for k in data["keys"]]
            trie.end_id = int(data["end_id"])
        trie.root = (0, 0, len(trie.rows))
        trie._root_allowed = trie._distinct(trie.rows[:, 0])
        return trie


def tokenize_titles(tokenizer: Any, titles: list[str]) -> list[list[int]]:
    """Each title's tokens as the answer of a chat turn: no special tokens, no leading space."""
    return [list(ids) for ids in tokenizer(titles, add_special_tokens=False)["input_ids"]]


def build_trie(tokenizer: Any, titles: list[str], end_id: int | None = None) -> TitleTrie:
    """A trie over ``titles`` in ``tokenizer``'s tokens, each ending in ``end_id`` (default: the EOS token)."""
    if not titles:
        raise LlmrecError("cannot ground to an empty candidate list; give at least one candidate")
    end = tokenizer.eos_token_id if end_id is None else end_id
    return TitleTrie(tokenize_titles(tokenizer, titles), titles, end)


_tries: dict[str, TitleTrie] = {}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short key for a tokenizer's vocabulary: tries are only valid for the tokenizer that built them.

    Computed once per tokenizer object (it reads the whole vocabulary: tens of milliseconds, too slow for every
    grounded request).
    """
    known = _fingerprints.get(id(tokenizer))
    if known is not None and known[0]() is tokenizer:
        return known[1]
    fingerprint = _vocabulary_digest(tokenizer)
    with contextlib.suppress(TypeError):  # an object without weak references is fingerprinted every time
        _fingerprints[id(tokenizer)] = (weakref.ref(tokenizer), fingerprint)
    return fingerprint


_fingerprints: dict[int, tuple[Any, str]] = {}


def _vocabulary_digest(tokenizer: Any) -> str:
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(f"{type(tokenizer).__name__}:{len(vocab)}:{tokenizer.eos_token_id}".encode())
    for token, index in sorted(vocab.items(), key=lambda kv: kv[1])[:: max(1, len(vocab) // 4096)]:
        digest.update(f"{index}={token}".encode())
    return digest.hexdigest()[:16]


def catalog_trie_path(catalog: Catalog, tokenizer: Any) -> Path:
    """The cached whole-catalog trie file for this catalog and tokenizer, built on first use."""
    key = f"{catalog.fingerprint[:16]}-{tokenizer_fingerprint(tokenizer)}"
    path = llmrec_home() / "cache" / "tries" / f"{key}.npz"
    if key not in _tries:
        if path.exists():
            _tries[key] = TitleTrie.load(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            _tries[key] = build_trie(tokenizer, list(dict.fromkeys(catalog.titles)))
            _tries[key].save(path)
    return path


def catalog_trie(catalog: Catalog, tokenizer: Any) -> TitleTrie:
    """The whole-catalog trie (built once per catalog and tokenizer, cached on disk and in memory)."""
    path = catalog_trie_path(catalog, tokenizer)
    return _tries[path.stem]


def load_trie(path: str | Path) -> TitleTrie:
    """A trie file, loaded once per process (engine worker processes use this)."""
    key = Path(path).stem
    if key not in _tries:
        _tries[key] = TitleTrie.load(Path(path))
    return _tries[key]


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
