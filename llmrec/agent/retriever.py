"""The catalog as the agent and the server search it: :class:`CatalogIndex` (loaded once: the items' MiniLM text
vectors, and an encoder run's model for personal scores) and :class:`CatalogRetriever`, a langchain-core
``BaseRetriever`` over it.

Text search is the query's MiniLM embedding against every item's text vector (numpy; a catalog of millions would
take faiss). With an encoder run, a known user's recommendations are the encoder's scores after their history;
a query for a known user blends the two (each standardised, ``personal`` weight on the encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from llmrec.adapters.representations import item_texts
from llmrec.catalog.retrievers import DenseRetriever
from llmrec.data.dataset import Dataset
from llmrec.encoders.base import left_padded
from llmrec.encoders.run import check_encoder_run, load_best
from llmrec.errors import LlmrecError


@dataclass(frozen=True)
class Hit:
    """One catalog item found: its id, raw id, title and score."""

    item_id: int
    raw_id: str
    title: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "raw_id": self.raw_id, "title": self.title, "score": round(self.score, 4)}


class CatalogIndex:
    """A dataset's items, searchable by text and (with ``encoder_run``) recommendable per user; loaded once."""

    def __init__(self, dataset: Dataset, encoder_run: Path | str | None = None, device: str = "auto") -> None:
        self.dataset = dataset
        self.dense = DenseRetriever(dataset, device=device)
        self.embedder = self.dense.embedder
        self.texts = ["", *item_texts(dataset)]
        items = dataset.items.sort_values("item_id")
        self.raw_ids = ["", *items["raw_id"].astype(str)]
        self.titles = dataset.titles.tolist()
        self.encoder = None
        self.encoder_run = None
        if encoder_run is not None:
            check_encoder_run(encoder_run, dataset)
            self.encoder = load_best(encoder_run).eval()
            self.encoder_run = str(encoder_run)
        counts = np.bincount(dataset.interactions["item_id"].to_numpy(), minlength=dataset.num_items + 1)
        self.popularity = counts.astype(np.float64)

    def hit(self, item_id: int, score: float) -> Hit:
        return Hit(int(item_id), self.raw_ids[item_id], self.titles[item_id], float(score))

    def history(self, user: str | None) -> list[int]:
        """A known user's items in time order (raw id or ``#N``), else none."""
        if user is None:
            return []
        try:
            return self.dataset.sequences[self.dataset.user_id(user)].tolist()
        except LlmrecError:
            return []

    def text_scores(self, query: str) -> np.ndarray:
        """``[N+1]`` cosine of the query's embedding with every item's text (padding at ``-inf``)."""
        return self.dense.scores(query)

    def personal_scores(self, history: list[int]) -> np.ndarray | None:
        """``[N+1]`` the encoder's scores after ``history`` (None without an encoder or a history)."""
        if self.encoder is None or not history:
            return None
        with torch.inference_mode():
            scores = self.encoder.score(left_padded([history], self.encoder.config.max_len))[0]
        return scores.double().numpy()

    def top(self, scores: np.ndarray, k: int, exclude: set[int] | frozenset[int] = frozenset()) -> list[Hit]:
        scores = scores.copy()
        scores[0] = -np.inf
        if exclude:
            scores[list(exclude)] = -np.inf
        order = np.argsort(-scores, kind="stable")[:k]
        return [self.hit(int(i), scores[i]) for i in order if np.isfinite(scores[i])]

    def search(self, query: str, k: int = 5, user: str | None = None, personal: float = 0.3) -> list[Hit]:
        """Items matching ``query`` (with a known user and an encoder: blended with their personal scores)."""
        scores = self.text_scores(query)
        history = self.history(user)
        mine = self.personal_scores(history)
        if mine is not None:
            scores = (1 - personal) * _standard(scores) + personal * _standard(mine)
        return self.top(scores, k)

    def recommend(
        self, user: str | None = None, k: int = 10, history: list[int] | None = None, profile: str = ""
    ) -> tuple[list[Hit], str]:
        """Top-``k`` items a user has not had, and where they came from: the encoder after their history (or the
        ``history`` given), else the profile text's dense match, else popularity."""
        history = list(history) if history is not None else self.history(user)
        seen = set(history)
        mine = self.personal_scores(history)
        if mine is not None:
            return self.top(mine, k, seen), f"encoder {self.encoder_run}"
        if profile.strip():
            return self.top(self.text_scores(profile), k, seen), "profile (dense)"
        return self.top(self.popularity, k, seen), "popularity"


def _standard(scores: np.ndarray) -> np.ndarray:
    finite = np.isfinite(scores)
    out = np.full_like(scores, -np.inf, dtype=np.float64)
    values = scores[finite]
    spread = values.std() or 1.0
    out[finite] = (values - values.mean()) / spread
    return out


class CatalogRetriever(BaseRetriever):
    """A langchain retriever over a :class:`CatalogIndex`: documents are items (``page_content`` the item's text,
    ``metadata`` its ``item_id``, ``raw_id``, ``title`` and ``score``); with ``user``, personalised."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: CatalogIndex
    k: int = 5
    user: str | None = None

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.index.search(query, self.k, self.user)
        return [Document(page_content=self.index.texts[h.item_id], metadata=h.to_dict()) for h in hits]
