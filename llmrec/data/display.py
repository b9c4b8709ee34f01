"""Human-readable views of a dataset: a user's history with titles."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llmrec.data.dataset import Dataset


def format_time(value: int, unit: str) -> str:
    """A timestamp as text: ISO date-time for seconds and milliseconds, ``#N`` for a sequence index.

    >>> format_time(881250949, "s")
    '1997-12-04 15:55:49'
    >>> format_time(3, "index")
    '#3'
    """
    if unit == "index":
        return f"#{value}"
    seconds = value / 1000 if unit == "ms" else value
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def user_history(dataset: Dataset, user: str, limit: int = 0) -> dict[str, Any]:
    """A user's interactions in time order with item titles (the last ``limit`` ones when ``limit`` > 0)."""
    uid = dataset.user_id(user)
    frame = dataset.interactions
    rows = frame[frame["user_id"] == uid]
    total = len(rows)
    if limit > 0:
        rows = rows.iloc[-limit:]
    items = dataset.items.set_index("item_id")
    unit = dataset.meta.get("timestamp_unit", "s")
    history = []
    for position, row in zip(range(total - len(rows) + 1, total + 1), rows.itertuples(index=False), strict=True):
        entry: dict[str, Any] = {
            "position": position,
            "item_id": int(row.item_id),
            "raw_id": str(items.at[row.item_id, "raw_id"]),
            "title": str(items.at[row.item_id, "title"]),
            "timestamp": int(row.timestamp),
            "time": format_time(int(row.timestamp), unit),
        }
        if "rating" in frame and row.rating == row.rating:
            entry["rating"] = float(row.rating)
        history.append(entry)
    return {"user_id": uid, "raw_id": raw_user_id(dataset, uid), "length": total, "history": history}


def raw_user_id(dataset: Dataset, uid: int) -> str:
    """The source's id of internal user ``uid``."""
    return str(dataset.users.loc[dataset.users["user_id"] == uid, "raw_id"].iat[0])


def ranked_items(dataset: Dataset, item_ids: list[int], scores: list[float]) -> list[dict[str, Any]]:
    """Recommendation rows in the given order: ``rank`` (from 1), ``item_id``, ``raw_id``, ``title``, ``score``."""
    items = dataset.items.set_index("item_id")
    return [
        {
            "rank": rank,
            "item_id": int(item),
            "raw_id": str(items.at[int(item), "raw_id"]),
            "title": str(items.at[int(item), "title"]),
            "score": float(score),
        }
        for rank, (item, score) in enumerate(zip(item_ids, scores, strict=True), start=1)
    ]
