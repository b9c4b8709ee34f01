"""Dataset statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec.data.dataset import Dataset


def dataset_stats(dataset: Dataset) -> dict[str, Any]:
    """Counts, sequence lengths, density and time range of a dataset.

    ``density`` is interactions / (users x items); repeated pairs count each time.
    """
    frame = dataset.interactions
    users, items, n = dataset.num_users, dataset.num_items, len(frame)
    lengths = np.bincount(frame["user_id"].to_numpy(), minlength=users + 1)[1:]
    item_counts = np.bincount(frame["item_id"].to_numpy(), minlength=items + 1)[1:]
    pairs = frame[["user_id", "item_id"]].drop_duplicates()
    stats: dict[str, Any] = {
        "name": dataset.name,
        "path": str(dataset.path),
        "users": users,
        "items": items,
        "interactions": n,
        "avg_seq_len": round(float(lengths.mean()), 4) if users else 0.0,
        "median_seq_len": float(np.median(lengths)) if users else 0.0,
        "min_seq_len": int(lengths.min()) if users else 0,
        "max_seq_len": int(lengths.max()) if users else 0,
        "avg_item_count": round(float(item_counts.mean()), 4) if items else 0.0,
        "density": round(n / (users * items), 6) if users and items else 0.0,
        "repeated_interactions": int(n - len(pairs)),
        "timestamp_unit": dataset.meta.get("timestamp_unit", "s"),
        "time_range": [int(frame["timestamp"].min()), int(frame["timestamp"].max())] if n else None,
        "has_rating": "rating" in frame and bool(frame["rating"].notna().any()),
        "has_review": "review" in frame and bool((frame["review"].astype(str) != "").any()),
    }
    return stats
