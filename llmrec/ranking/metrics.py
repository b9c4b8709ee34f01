"""Ranking metrics as pure functions of the target's rank.

A rank is 0-based: 0 means the target is the top candidate. Ties count against the target (see
:func:`target_ranks`), so a model that scores everything equally ranks every target last, never first.
"""

from __future__ import annotations

import numpy as np


def hr_at_k(ranks: np.ndarray, k: int) -> float:
    """Hit rate: the share of targets ranked in the top ``k``.

    >>> hr_at_k(np.array([0, 3, 10]), 5)
    0.6666666666666666
    """
    return float(np.mean(np.asarray(ranks) < k))


def ndcg_at_k(ranks: np.ndarray, k: int) -> float:
    """NDCG with one relevant item: ``1 / log2(rank + 2)`` inside the top ``k``, else 0, averaged.

    >>> round(ndcg_at_k(np.array([0, 1, 10]), 10), 6)  # (1 + 1/log2(3) + 0) / 3
    0.543643
    """
    ranks = np.asarray(ranks)
    return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


def mrr_at_k(ranks: np.ndarray, k: int) -> float:
    """Mean reciprocal rank, counting 0 beyond the top ``k``.

    >>> mrr_at_k(np.array([0, 1, 3]), 3)  # (1 + 1/2 + 0) / 3
    0.5
    """
    ranks = np.asarray(ranks)
    return float(np.mean(np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0)))


def target_ranks(scores: np.ndarray, target_index: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """The 0-based rank of each row's target among that row's candidates.

    ``scores`` is ``[B, C]``, ``target_index`` ``[B]`` the target's column; ``valid`` ``[B, C]`` marks the
    candidates that take part (masked ones are ignored). Every other candidate scoring at least as high as the
    target ranks above it, so ties count against the target. A non-finite score is an error.

    >>> target_ranks(np.array([[0.1, 0.9, 0.5], [0.3, 0.3, 0.3]]), np.array([2, 0])).tolist()
    [1, 2]
    """
    scores = np.asarray(scores)
    if not np.isfinite(scores).all():
        raise FloatingPointError("non-finite scores (NaN or inf) in the model output; the model is broken")
    rows = np.arange(len(scores))
    target = scores[rows, target_index][:, None]
    above = scores >= target
    above[rows, target_index] = False
    if valid is not None:
        above &= valid
    return above.sum(axis=1)


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float]:
    """HR, NDCG and MRR at each ``k``, under lowercase keys such as ``ndcg@10``.

    >>> ranking_metrics(np.array([0, 2]), ks=(1,))
    {'hr@1': 0.5, 'ndcg@1': 0.5, 'mrr@1': 0.5}
    """
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = hr_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
        out[f"mrr@{k}"] = mrr_at_k(ranks, k)
    return out
