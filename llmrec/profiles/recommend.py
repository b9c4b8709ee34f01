"""Recommending with a profile, three ways:

- **LLM ranking**: the candidates' titles scored by an engine as the complete answer to a prompt that shows the
  profile (``prompts/rank_with_profile.jinja``; it can show recent items or earlier reviews instead, the rows a
  profile is measured against); the answer is the best-scored candidate, so it is always a catalog item;
- **dense**: the profile text embedded by the text embedder (MiniLM), dotted with the items' text vectors (the
  ``text`` item representation), over candidates or the whole catalog;
- **blended**: dense scores and another scorer's (an encoder's) standardised per user and mixed by ``weight``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from llmrec.adapters.representations import encode_texts
from llmrec.inference.engine import Engine, Request, require
from llmrec.profiles.schema import Profile
from llmrec.prompts import render


def profile_prompt(
    candidates: list[str],
    profile: str = "",
    history: list[str] | None = None,
    reviews: list[str] | None = None,
) -> list[dict[str, str]]:
    """The chat that asks for the next item among ``candidates`` (titles), with the profile text, recent item
    titles and/or earlier reviews as data in the user's message."""
    text = render("rank_with_profile", profile=profile, history=history or [], reviews=reviews or [],
                  candidates=candidates)  # fmt: skip
    return [{"role": "user", "content": text}]


def llm_scores(engine: Engine, prompts: list[list[dict[str, str]]], candidates: list[list[str]]) -> np.ndarray:
    """``[E, C]``: each candidate title's log-probability as the complete answer to its prompt."""
    require(engine, "score", "ranking candidates with a profile")
    scores = engine.score([Request(messages=m) for m in prompts], candidates)
    return np.asarray(scores, dtype=np.float64)


def prompt_tokens(engine: Any, prompts: list[list[dict[str, str]]]) -> list[int]:
    """Prompt tokens of each chat under the engine's tokenizer and chat template."""
    from llmrec.inference.prompting import render_prompt

    return [len(render_prompt(engine.tokenizer, Request(messages=m))) for m in prompts]


class DenseProfiles:
    """Profile texts embedded by a sentence-transformers model and scored against the items' text vectors
    (``item_vectors [N+1, D]``, row 0 the padding item, from :func:`llmrec.adapters.text_item_vectors` with the
    same embedder)."""

    def __init__(self, embedder: Any, item_vectors: torch.Tensor) -> None:
        self.embedder = embedder
        vectors = torch.nn.functional.normalize(item_vectors.float(), dim=-1)
        vectors[0] = 0
        self.items = vectors.numpy()

    def embed(self, texts: list[str]) -> np.ndarray:
        """``[E, D]`` unit vectors of the texts (an empty text is the zero vector: it scores every item alike)."""
        out = np.zeros((len(texts), self.items.shape[1]), dtype=np.float32)
        present = [i for i, t in enumerate(texts) if t.strip()]
        if present:
            encoded = encode_texts(self.embedder, [texts[i] for i in present])
            out[present] = torch.nn.functional.normalize(encoded, dim=-1).numpy()
        return out

    def scores(self, texts: list[str], candidates: np.ndarray | None = None) -> np.ndarray:
        """``[E, C]`` cosine scores of each text against its candidates (item ids), or ``[E, N+1]`` against the
        whole catalog (column 0, the padding item, at ``-inf``)."""
        queries = self.embed(texts)
        if candidates is None:
            out = queries @ self.items.T
            out[:, 0] = -np.inf
            return out
        return np.einsum("ed,ecd->ec", queries, self.items[np.asarray(candidates)])

    def facet_scores(
        self, profiles: list[Profile | None], candidates: np.ndarray | None = None, dislike: float = 1.0
    ) -> np.ndarray:
        """Scores from a profile's facts one by one rather than from its whole text: an item's best cosine with any
        liked or looked-for aspect, minus ``dislike`` times its best cosine with any disliked one. Embedding the
        whole text averages every aspect into one vector, so an item matching one strong preference scores like
        an item matching none; the best match keeps it. ``[E, C]`` against each profile's candidates (item ids),
        or ``[E, N+1]`` against the whole catalog (column 0 at ``-inf``); a kind without facts adds nothing, and
        no profile scores every item 0."""
        aspects = sorted({f.aspect for p in profiles if p is not None for f in p.facts})
        index = {a: i for i, a in enumerate(aspects)}
        vectors = self.embed(aspects)
        width = self.items.shape[0] if candidates is None else np.asarray(candidates).shape[1]
        out = np.zeros((len(profiles), width))
        for row, profile in enumerate(profiles):
            items = self.items if candidates is None else self.items[np.asarray(candidates[row])]
            for kinds, sign in ((("like", "feature"), 1.0), (("dislike",), -dislike)):
                facts = [index[f.aspect] for f in (profile.facts if profile else ()) if f.kind in kinds]
                if facts:
                    out[row] += sign * (items @ vectors[facts].T).max(axis=1)
        if candidates is None:
            out[:, 0] = -np.inf
        return out


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row's scores centred and scaled to unit standard deviation (a row of equal scores becomes zeros).

    >>> standardise(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])).round(3).tolist()
    [[-1.225, 0.0, 1.225], [0.0, 0.0, 0.0]]
    """
    centred = scores - scores.mean(axis=1, keepdims=True)
    spread = scores.std(axis=1, keepdims=True)
    return np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)


def blend(first: np.ndarray, second: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - weight) * first + weight * second``, each standardised per row first."""
    return (1 - weight) * standardise(first) + weight * standardise(second)
