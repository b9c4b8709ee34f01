"""Training examples for sequential encoders: every target once per epoch, each with (nearly) full context.

A user's training sequence is cut into overlapping windows of ``window`` positions (a model's ``max_len``) that end
``stride`` positions apart, latest first. A window computes the loss only on its last ``stride`` positions (the
earliest window: on all of them), so every target is trained exactly once per epoch, predicted from at least
``window - stride + 1`` items, at about ``1/stride`` of the cost of training every prefix as its own example.
A model that reads sequences of any length (a recurrent one) can take windows of ``max_len + stride - 1``
positions: then every target is predicted from at least ``max_len`` items, however large the stride.
"""

from __future__ import annotations

import numpy as np

from llmrec.errors import LlmrecError


def training_windows(
    sequences: list[np.ndarray], window: int, stride: int, objective: str = "next"
) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs, targets)``, both ``[W, window]`` and left-padded; a target of 0 means no loss there.

    ``objective="next"`` pairs each position with the following item; ``"cloze"`` uses the items themselves
    as targets at every real position of the window (the model masks a share of them, so overlapping windows
    are extra masking draws rather than repeats).

    >>> inputs, targets = training_windows([np.array([]), np.array([1, 2, 3, 4, 5])], window=3, stride=2)
    >>> inputs.tolist(), targets.tolist()
    ([[2, 3, 4], [0, 1, 2]], [[0, 4, 5], [0, 2, 3]])
    >>> inputs, targets = training_windows([np.arange(1, 8)], window=4, stride=3)  # max_len 2: each sees >= 2
    >>> inputs.tolist(), targets.tolist()
    ([[3, 4, 5, 6], [0, 1, 2, 3]], [[0, 5, 6, 7], [0, 2, 3, 4]])
    """
    if not 1 <= stride <= window:
        raise LlmrecError(f"stride must be between 1 and {window} (the training windows' length), got {stride}")
    rows_in: list[np.ndarray] = []
    rows_out: list[np.ndarray] = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        if objective == "next":
            if len(seq) < 2:
                continue
            x, y = seq[:-1], seq[1:]
        else:
            if len(seq) < 1:
                continue
            x, y = seq, seq
        end = len(x)
        while True:
            start = max(0, end - window)
            first = start == 0
            row_in = np.zeros(window, dtype=np.int64)
            row_out = np.zeros(window, dtype=np.int64)
            row_in[window - (end - start) :] = x[start:end]
            covered = end - start if first or objective == "cloze" else min(stride, end - start)
            row_out[window - covered :] = y[end - covered : end]
            rows_in.append(row_in)
            rows_out.append(row_out)
            if first:
                break
            end -= stride
    if not rows_in:
        raise LlmrecError("no training examples: every training sequence is too short")
    return np.stack(rows_in), np.stack(rows_out)
