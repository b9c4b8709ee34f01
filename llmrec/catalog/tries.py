"""Token tries over titles: what a grounded answer may spell next, built once per catalog and tokenizer.

A ``TitleTrie`` over the token sequences of the allowed titles (the candidates of one request, or the whole
catalog) tells a logits processor which tokens may come next, so a constrained answer *is* a title, and its tokens
identify the item. The trie is a lexicographically sorted ``[T, D]`` array of token ids; the titles sharing a
prefix are one contiguous block of rows, so each decoding step is a binary search inside the block and the allowed
next tokens are the distinct values of one column of it. That keeps a 100k-title catalog to a few MB, built once
and cached on disk under ``$LLMREC_HOME/cache/tries/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.catalog.catalog import Catalog
from llmrec.errors import LlmrecError
from llmrec.paths import llmrec_home


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
