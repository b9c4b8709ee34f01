"""How an encoder's training windows are laid out and batched, epoch by epoch.

:func:`training_layout` picks a model's window length and stride (the windows themselves come from
:func:`llmrec.encoders.windows.training_windows`); :func:`window_pools` separates the windows that train only
their newest positions from users' earliest windows, which train every position; :func:`pool_batch_sizes` sizes
each pool's batches so that every batch trains about as many targets; :func:`epoch_batches` shuffles one epoch.
"""

from __future__ import annotations

import numpy as np
import torch

from llmrec.encoders.base import Encoder


def training_layout(model: Encoder, stride: int = 0) -> tuple[int, int]:
    """``(stride, window)`` of ``model``'s training windows for the configured ``stride`` (0: the default).

    A causal model learns each target once per window, so its windows are dense (default stride ``max_len //
    25``, each target seeing at least ``max_len - stride + 1`` items). Cloze windows are extra masking draws of the
    same items (default stride ``max_len // 10``: with half-overlapping windows, BERT4Rec was still learning
    after 80 epochs of ML-100K and stayed below its validation score at stride 5). A model that reads any
    length (GRU4Rec) takes windows of ``max_len + stride - 1`` positions, so that every target sees at least
    ``max_len`` items whatever the stride.
    """
    max_len = model.config.max_len
    stride = stride or max(1, max_len // (25 if model.objective == "next" else 10))
    if model.objective == "next" and model.any_length:
        return stride, max_len + stride - 1
    return stride, max_len


def window_pools(targets: np.ndarray, stride: int, objective: str) -> list[np.ndarray]:
    """Indices of the windows that train only their last ``stride`` positions, and of the others (each user's
    earliest window, a target everywhere), so that most batches need the last layer's outputs at a few positions
    only; cloze windows are one pool.

    >>> [p.tolist() for p in window_pools(np.array([[0, 0, 7], [4, 5, 6]]), 1, "next")]
    [[0], [1]]
    """
    if objective != "next":
        return [np.arange(len(targets))]
    spans = targets.shape[1] - (targets > 0).argmax(1)
    return [np.flatnonzero(spans <= stride), np.flatnonzero(spans > stride)]


def pool_batch_sizes(pools: list[np.ndarray], targets: np.ndarray, batch_size: int) -> list[int]:
    """Windows per batch of each pool, so that every batch trains about as many targets: ``batch_size`` for the
    pool with the fewest targets per window, proportionally fewer windows for the others.

    The loss is a mean over a batch's targets, so a batch of users' earliest windows (a target at every position)
    would otherwise weigh each of its targets dozens of times less than a batch of windows training their
    newest ``stride`` positions. On ML-100K at stride 1 the earliest windows hold 40% of all targets.

    >>> targets = np.array([[0, 0, 7], [0, 0, 3], [4, 5, 6], [1, 2, 3]])
    >>> pool_batch_sizes([np.array([0, 1]), np.array([2, 3])], targets, 6)
    [6, 2]
    """
    per_window = [float((targets[pool] > 0).sum(1).mean()) if len(pool) else 0.0 for pool in pools]
    fewest = min((w for w in per_window if w > 0), default=1.0)
    return [max(1, round(batch_size * fewest / w)) if w > 0 else batch_size for w in per_window]


def epoch_batches(pools: list[np.ndarray], sizes: list[int], generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches of window indices: each pool shuffled and cut into batches of its size, then all
    batches shuffled.

    >>> batches = epoch_batches([np.arange(5), np.arange(5, 8)], [2, 2], torch.Generator().manual_seed(0))
    >>> sorted(len(b) for b in batches), all(max(b) < 5 or min(b) >= 5 for b in batches)
    ([1, 1, 2, 2, 2], True)
    >>> len(epoch_batches([np.arange(3), np.arange(0)], [2, 2], torch.Generator()))
    2
    """
    batches = []
    for pool, size in zip(pools, sizes, strict=True):
        if not len(pool):
            continue
        shuffled = torch.from_numpy(pool)[torch.randperm(len(pool), generator=generator)]
        batches.extend(shuffled.split(size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
