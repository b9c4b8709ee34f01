"""Train / validation / test splits. A split is a pure function of the dataset and its arguments.

Every split keeps each user's full time-ordered sequence and says, per user, how many leading items are for
training, and, per evaluation example, the user, the position of the target in that user's sequence (its
history is everything before) and the target item.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmrec.data.dataset import Dataset
from llmrec.errors import LlmrecError


@dataclass(frozen=True)
class EvalSet:
    """Evaluation examples: the target of example ``e`` is ``sequences[users[e]][cutoffs[e]]``."""

    users: np.ndarray
    cutoffs: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Split:
    """A split of a dataset into training prefixes and evaluation examples."""

    kind: str
    args: dict[str, Any]
    sequences: list[np.ndarray] = field(repr=False)
    train_len: np.ndarray = field(repr=False)
    valid: EvalSet = field(repr=False)
    test: EvalSet = field(repr=False)
    not_evaluated: dict[str, int] = field(default_factory=dict)
    dataset_sha256: str = ""

    def eval_set(self, name: str) -> EvalSet:
        """The ``valid`` or ``test`` examples."""
        if name not in ("valid", "test"):
            raise LlmrecError(f"split {name!r} does not exist; choose valid or test")
        return self.valid if name == "valid" else self.test

    def train_sequences(self) -> list[np.ndarray]:
        """Each user's training prefix, indexed by user id."""
        return [seq[:n] for seq, n in zip(self.sequences, self.train_len, strict=True)]

    def history(self, user: int, cutoff: int) -> np.ndarray:
        """The items before position ``cutoff`` of ``user``'s sequence."""
        return self.sequences[user][:cutoff]

    def fingerprint(self) -> str:
        """A short hash of the dataset files and the split arguments: equal fingerprints, equal splits."""
        blob = json.dumps({"kind": self.kind, "args": self.args, "data": self.dataset_sha256}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _dataset_hash(dataset: Dataset) -> str:
    return hashlib.sha256(json.dumps(dataset.meta.get("sha256", {}), sort_keys=True).encode()).hexdigest()


def leave_one_out_split(dataset: Dataset, min_len: int = 3) -> Split:
    """Leave-one-out: each user's last item is the test target, the second-last the validation target.

    Users with fewer than ``min_len`` (at least 3) interactions are not evaluated; their whole sequence is
    training data. ``not_evaluated["too_short"]`` counts them.
    """
    if min_len < 3:
        raise LlmrecError("leave-one-out needs min_len >= 3 (one training item, a validation and a test target)")
    sequences = dataset.sequences
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    evaluated = np.flatnonzero(lengths >= min_len)
    evaluated = evaluated[evaluated > 0]
    train_len = lengths.copy()
    train_len[evaluated] -= 2
    short = int(((lengths > 0) & (lengths < min_len)).sum())
    if not len(evaluated):
        raise LlmrecError(f"{dataset.path}: no user has {min_len} or more interactions; leave-one-out needs them")

    def examples(offset: int) -> EvalSet:
        cutoffs = lengths[evaluated] - offset
        targets = np.array([sequences[u][c] for u, c in zip(evaluated, cutoffs, strict=True)], dtype=np.int64)
        return EvalSet(evaluated.copy(), cutoffs, targets)

    return Split(
        kind="leave-one-out",
        args={"min_len": min_len},
        sequences=sequences,
        train_len=train_len,
        valid=examples(2),
        test=examples(1),
        not_evaluated={"too_short": short},
        dataset_sha256=_dataset_hash(dataset),
    )


def temporal_split(
    dataset: Dataset,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    valid_time: int | None = None,
    test_time: int | None = None,
) -> Split:
    """Global temporal split: interactions from ``test_time`` on are test, from ``valid_time`` on validation.

    The cut times default to the quantiles that leave ``valid_frac`` and ``test_frac`` of all interactions in
    each part. Every validation or test interaction is an example whose history is all of the user's earlier
    interactions (so a test history includes the validation period); interactions with no history (a user's
    first) are not evaluated and counted in ``not_evaluated["no_history"]``.
    """
    fractions_ok = 0 < valid_frac < 1 and 0 < test_frac < 1 and valid_frac + test_frac < 1
    if (valid_time is None or test_time is None) and not fractions_ok:
        raise LlmrecError("temporal split: valid_frac and test_frac must be in (0, 1) with a sum below 1")
    times = np.sort(dataset.interactions["timestamp"].to_numpy())
    if test_time is None:
        test_time = int(times[int(np.floor(len(times) * (1 - test_frac)))])
    if valid_time is None:
        valid_time = int(times[int(np.floor(len(times) * (1 - test_frac - valid_frac)))])
    if valid_time > test_time:
        raise LlmrecError(f"temporal split: valid_time {valid_time} is after test_time {test_time}")
    users = dataset.interactions["user_id"].to_numpy()
    stamps = dataset.interactions["timestamp"].to_numpy()
    bounds = np.searchsorted(users, np.arange(dataset.num_users + 2))
    positions = np.arange(len(users)) - bounds[users]
    train_len = np.zeros(dataset.num_users + 1, dtype=np.int64)
    np.add.at(train_len, users[stamps < valid_time], 1)
    items = dataset.interactions["item_id"].to_numpy()

    def examples(mask: np.ndarray) -> EvalSet:
        mask = mask & (positions > 0)
        return EvalSet(users[mask].astype(np.int64), positions[mask].astype(np.int64), items[mask].astype(np.int64))

    valid_mask = (stamps >= valid_time) & (stamps < test_time)
    test_mask = stamps >= test_time
    return Split(
        kind="temporal",
        args={"valid_time": valid_time, "test_time": test_time},
        sequences=dataset.sequences,
        train_len=train_len,
        valid=examples(valid_mask),
        test=examples(test_mask),
        not_evaluated={"no_history": int(((valid_mask | test_mask) & (positions == 0)).sum())},
        dataset_sha256=_dataset_hash(dataset),
    )
