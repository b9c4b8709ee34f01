"""Paired comparisons of two rankers on the same users: the difference of a metric and its bootstrap interval.

Both sides are scored on the same users and candidates, so the comparison is paired: each user's metric under A
minus under B. With several seeds per side, each user's metric is first averaged over that side's seeds. The 95%
interval of the mean difference comes from resampling users with replacement (percentile bootstrap). A claim
that A beats B holds only when the whole interval is above zero (:attr:`PairedInterval.beats`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


def per_user(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each user's value of ``metric`` (``hr@K``, ``ndcg@K`` or ``mrr@K``) from 0-based target ranks.

    >>> per_user(np.array([0, 1, 12]), "ndcg@10").round(4).tolist()
    [1.0, 0.6309, 0.0]
    """
    name, _, k = metric.partition("@")
    ranks = np.asarray(ranks, dtype=np.float64)
    inside = ranks < int(k)
    if name == "hr":
        return inside.astype(np.float64)
    if name == "ndcg":
        return np.where(inside, 1.0 / np.log2(ranks + 2.0), 0.0)
    if name == "mrr":
        return np.where(inside, 1.0 / (ranks + 1.0), 0.0)
    raise ValueError(f"unknown metric {metric!r}; use hr@K, ndcg@K or mrr@K")


@dataclass(frozen=True)
class PairedInterval:
    """A minus B over the same users: both means, the mean difference and its bootstrap interval."""

    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    users: int
    resamples: int
    confidence: float

    @property
    def beats(self) -> bool:
        """Whether A beats B: the whole interval of the difference is above zero."""
        return self.low > 0

    def describe(self, digits: int = 4) -> str:
        """``+0.0123 [+0.0045, +0.0201]``: the difference and its interval."""
        return f"{self.diff:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with ``beats``."""
        return {**asdict(self), "beats": self.beats}


def _per_user_mean(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        return values
    if values.ndim == 2:
        return values.mean(axis=0)  # (seeds, users) -> users
    raise ValueError(f"expected [users] or [seeds, users] values, got shape {values.shape}")


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> PairedInterval:
    """The paired difference of A and B (per-user values ``[users]`` or ``[seeds, users]``, same users in the
    same order) and its percentile bootstrap interval over users.

    >>> interval = paired_bootstrap(np.array([1.0, 1.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0, 0.0]))
    >>> interval.diff, interval.users
    (0.5, 4)
    """
    a, b = _per_user_mean(a), _per_user_mean(b)
    if a.shape != b.shape or not len(a):
        raise ValueError(f"both sides need values for the same users, got {a.shape} and {b.shape}")
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError("confidence must be in (0, 1) and resamples at least 1")
    diffs = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # blocks keep the index matrix small for many users
        count = min(1000, resamples - start)
        picks = rng.integers(0, len(diffs), size=(count, len(diffs)))
        means[start : start + count] = diffs[picks].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedInterval(
        mean_a=float(a.mean()),
        mean_b=float(b.mean()),
        diff=float(diffs.mean()),
        low=float(low),
        high=float(high),
        users=len(diffs),
        resamples=resamples,
        confidence=confidence,
    )
