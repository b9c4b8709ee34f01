"""Retrievers over a catalog behind one small interface: ``search(queries, k)`` gives each text query's top-``k``
item ids, ``scores(query)`` its score of every item.

- ``bm25``: BM25 (the ``bm25s`` library) over each item's title and text attributes;
- ``dense``: the query's MiniLM embedding against every item's text vector (the ``text`` item representation);
- ``encoder``: a trained encoder run, reading the catalog titles a query names (in order) as a history and scoring
  the next item, for queries that are lists of items.

They are the frozen recommenders of Rec-R1's black-box reward (:mod:`llmrec.training.rewards`) and of query-writing
LLM runs at serving time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from llmrec.adapters.representations import encode_texts, item_texts, load_embedder, text_item_vectors
from llmrec.catalog.catalog import Catalog
from llmrec.data.dataset import Dataset
from llmrec.encoders.base import left_padded
from llmrec.encoders.run import check_encoder_run, load_best
from llmrec.errors import LlmrecError

RETRIEVERS = ("bm25", "dense", "encoder")


class Retriever(Protocol):
    """Items for text queries."""

    name: str

    def scores(self, query: str) -> np.ndarray:
        """``[N+1]`` the query's score of every item (column 0, the padding item, at ``-inf``)."""
        ...

    def search(self, queries: list[str], k: int) -> list[list[int]]:
        """Each query's ``k`` best item ids, best first."""
        ...


def _top(scores: np.ndarray, k: int) -> list[int]:
    scores = scores.copy()
    scores[0] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [int(i) for i in order if np.isfinite(scores[i])]


class BM25Retriever:
    """BM25 over the items' texts (title and text attributes), English stop words removed."""

    name = "bm25"

    def __init__(self, dataset: Dataset) -> None:
        import bm25s

        self.bm25s = bm25s
        self.size = dataset.num_items + 1
        self.index = bm25s.BM25()
        self.index.index(bm25s.tokenize(item_texts(dataset), stopwords="en", show_progress=False), show_progress=False)

    def scores(self, query: str) -> np.ndarray:
        words = self.bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        known = [w for w in words if w in self.index.vocab_dict]
        out = np.zeros(self.size)  # a query of no known word matches every item alike
        if known:
            out[1:] = self.index.get_scores(known)
        out[0] = -np.inf
        return out

    def search(self, queries: list[str], k: int) -> list[list[int]]:
        """Each query's ``k`` best items among those sharing a word with it (fewer when fewer match)."""
        out = []
        for query in queries:
            scores = self.scores(query)
            scores[scores <= 0] = -np.inf  # no word in common: not retrieved (rather than ranked by item id)
            out.append(_top(scores, k))
        return out


class DenseRetriever:
    """The query's MiniLM embedding (the bundled embedder, or ``embedder``) against every item's text vector."""

    name = "dense"

    def __init__(self, dataset: Dataset, embedder: Any = None, device: str = "auto") -> None:
        self.embedder = embedder if embedder is not None else load_embedder(None, device)
        vectors, _ = text_item_vectors(dataset, device=device)
        self.vectors = torch.nn.functional.normalize(vectors.float(), dim=-1).numpy()  # (N+1, D), row 0 zeros

    def embed(self, queries: list[str]) -> np.ndarray:
        return torch.nn.functional.normalize(encode_texts(self.embedder, queries), dim=-1).numpy()

    def scores(self, query: str) -> np.ndarray:
        out = self.vectors @ self.embed([query])[0]
        out[0] = -np.inf
        return out

    def search(self, queries: list[str], k: int) -> list[list[int]]:
        if not queries:
            return []
        scores = self.embed(queries) @ self.vectors.T  # (Q, N+1)
        return [_top(row, k) for row in scores]


class EncoderRetriever:
    """An encoder run reading the catalog items a query names (``A; B; C`` or one per line, in order) as a history
    and scoring the next item; a query that names none scores every item by popularity-free zeros."""

    name = "encoder"

    def __init__(self, dataset: Dataset, run: Path | str) -> None:
        check_encoder_run(run, dataset)
        self.encoder = load_best(run).eval()
        self.catalog = Catalog.from_dataset(dataset)
        self.size = dataset.num_items + 1

    def history(self, query: str) -> list[int]:
        """The catalog items a query names, in order (exact or normalised titles)."""
        items = []
        for part in re.split(r"[;\n]|,\s(?=[A-Z0-9])", query):
            found = self.catalog.resolve(part)
            if found.item_id is not None and found.resolved_by in ("exact", "normalised"):
                items.append(found.item_id)
        return items

    def scores(self, query: str) -> np.ndarray:
        history = self.history(query)
        if not history:
            out = np.zeros(self.size)
            out[0] = -np.inf
            return out
        with torch.inference_mode():
            return self.encoder.score(left_padded([history], self.encoder.config.max_len))[0].double().numpy()

    def search(self, queries: list[str], k: int) -> list[list[int]]:
        return [_top(self.scores(q), k) for q in queries]


def make_retriever(name: str, dataset: Dataset, encoder_run: Path | str | None = None, device: str = "auto") -> Any:
    """The retriever called ``name`` (``bm25``, ``dense``, ``encoder``) over ``dataset``."""
    if name == "bm25":
        return BM25Retriever(dataset)
    if name == "dense":
        return DenseRetriever(dataset, device=device)
    if name == "encoder":
        if encoder_run is None:
            raise LlmrecError("the encoder retriever needs an encoder run (a trained `llmrec encoder train` run)")
        return EncoderRetriever(dataset, encoder_run)
    raise LlmrecError(f"unknown retriever {name!r}; choose one of {', '.join(RETRIEVERS)}")
