"""Options that drop data. Each records in the import report how many rows, users and items it dropped."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmrec.data.dataset import RawData
from llmrec.errors import LlmrecError

DEDUP_CHOICES = ("keep", "first", "last")
TIE_CHOICES = ("source", "item")


@dataclass
class Preprocessing:
    """What to filter, in the order it is applied: rating threshold, duplicate handling, k-core.

    Every default keeps everything: no threshold, repeats kept in order, no k-core.
    """

    min_rating: float | None = None
    """Keep interactions whose rating is at least this (implicit feedback from explicit ratings)."""
    dedup: str = "keep"
    """Repeated (user, item) pairs: ``keep`` all, keep the ``first`` or the ``last`` occurrence in time."""
    min_user: int = 0
    """k-core: users need at least this many interactions (iterated with ``min_item`` to a fixed point)."""
    min_item: int = 0
    """k-core: items need at least this many interactions."""
    tie_order: str = "source"
    """Order of interactions with equal timestamps: ``source`` file order, or by ``item`` id."""

    def __post_init__(self) -> None:
        if self.dedup not in DEDUP_CHOICES:
            raise LlmrecError(f"--dedup {self.dedup!r}: choose one of {', '.join(DEDUP_CHOICES)}")
        if self.tie_order not in TIE_CHOICES:
            raise LlmrecError(f"--tie-order {self.tie_order!r}: choose one of {', '.join(TIE_CHOICES)}")
        if self.min_user < 0 or self.min_item < 0:
            raise LlmrecError("--min-user and --min-item must be 0 or more")


def apply_rating_threshold(raw: RawData, threshold: float) -> None:
    """Drop interactions rated below ``threshold``."""
    if "rating" not in raw.interactions or raw.interactions["rating"].isna().all():
        raise LlmrecError("--min-rating: this source has no ratings; drop the option")
    keep = (raw.interactions["rating"] >= threshold).to_numpy()
    raw.drop_rows(keep, f"rating below {threshold:g}")


def apply_dedup(raw: RawData, how: str) -> None:
    """Drop repeated (user, item) pairs, keeping the first or the last one in time (stable for ties)."""
    if how == "keep":
        return
    frame = raw.interactions
    order = np.lexsort((np.arange(len(frame)), frame["timestamp"].to_numpy()))
    in_time = frame.iloc[order]
    duplicated = in_time.duplicated(["user", "item"], keep="first" if how == "first" else "last").to_numpy()
    keep = np.ones(len(frame), dtype=bool)
    keep[order[duplicated]] = False
    raw.drop_rows(keep, f"repeated user-item pairs (kept the {how})")


def apply_k_core(raw: RawData, min_user: int, min_item: int) -> int:
    """Iteratively drop users and items with too few interactions until none remain; returns the rounds."""
    frame = raw.interactions
    keep = np.ones(len(frame), dtype=bool)
    users = pd.factorize(frame["user"])[0]
    items = pd.factorize(frame["item"])[0]
    rounds = 0
    while True:
        rounds += 1
        user_counts = np.bincount(users[keep], minlength=users.max() + 1)
        item_counts = np.bincount(items[keep], minlength=items.max() + 1)
        bad = keep & ((user_counts[users] < min_user) | (item_counts[items] < min_item))
        if not bad.any():
            break
        keep &= ~bad
    raw.drop_rows(keep, f"k-core (min_user={min_user}, min_item={min_item})", f"{rounds} rounds to a fixed point")
    if not keep.any():
        raise LlmrecError(
            f"k-core with --min-user {min_user} --min-item {min_item} leaves no interactions; lower the thresholds"
        )
    return rounds


def preprocess(raw: RawData, options: Preprocessing) -> None:
    """Apply the options in order; each step records what it dropped in ``raw.steps``."""
    if options.min_rating is not None:
        apply_rating_threshold(raw, options.min_rating)
    apply_dedup(raw, options.dedup)
    if options.min_user > 1 or options.min_item > 1:
        apply_k_core(raw, options.min_user, options.min_item)
    if raw.interactions.empty:
        raise LlmrecError("no interactions are left after filtering; relax the options")
