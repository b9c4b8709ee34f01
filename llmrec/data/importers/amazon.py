"""Amazon Reviews JSON lines, in the 2018 and the 2023 layout (gzip or plain), with optional metadata.

- 2018 (and 2014, whose metadata lines are Python dict literals): reviews with ``reviewerID``, ``asin``,
  ``overall``, ``unixReviewTime`` (seconds), ``reviewText``, ``summary``; metadata with ``asin``, ``title``,
  ``category`` / ``categories``, ``brand``.
- 2023: reviews with ``user_id``, ``parent_asin``, ``rating``, ``timestamp`` (milliseconds), ``text``,
  ``title``; metadata with ``parent_asin``, ``title``, ``main_category``, ``categories``, ``store``.

The layout is detected from the first record. With a metadata file, reviews of items it does not list are
skipped and counted in the import report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.data.dataset import RawData
from llmrec.data.readers import read_json_lines, require_file
from llmrec.errors import InputError


@dataclass(frozen=True)
class _Layout:
    name: str
    user: str
    item: str
    rating: str
    time: str
    text: str
    summary: str
    unit: str
    meta_item: str


_LAYOUTS = (
    _Layout("2018", "reviewerID", "asin", "overall", "unixReviewTime", "reviewText", "summary", "s", "asin"),
    _Layout("2023", "user_id", "parent_asin", "rating", "timestamp", "text", "title", "ms", "parent_asin"),
)


def _detect(record: dict[str, Any], path: Path, line: int) -> _Layout:
    for layout in _LAYOUTS:
        if layout.user in record and layout.item in record:
            return layout
    raise InputError(
        path,
        f"record has neither 2018 (reviewerID, asin) nor 2023 (user_id, parent_asin) fields: {sorted(record)[:8]}",
        "pass an Amazon Reviews file, or choose another --format",
        line=line,
    )


def _number(value: Any, path: Path, line: int, what: str) -> float:
    if isinstance(value, bool) or value is None:
        raise InputError(path, f"{what} {value!r} is not a number", "fix or remove the line", line=line)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(path, f"{what} {value!r} is not a number", "fix or remove the line", line=line) from None


def _timestamp(value: Any, path: Path, line: int) -> int:
    number = _number(value, path, line, "timestamp")
    if not np.isfinite(number) or abs(number) >= 2**63:
        raise InputError(path, f"timestamp {value!r} is not a finite integer", "fix or remove the line", line=line)
    return int(number)


def _id(value: Any) -> str:
    """A user or item id as text; ``""`` when absent (0 is a valid id, not a missing one)."""
    return "" if value is None else str(value).strip()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return str(value)


def _categories(record: dict[str, Any]) -> str:
    value = record.get("categories") or record.get("category") or []
    if value and isinstance(value[0], list):  # older files nest category paths
        value = value[0]
    return " > ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def _read_meta(path: Path, layout: _Layout) -> pd.DataFrame:
    rows: dict[str, dict[str, str]] = {}
    for number, record in read_json_lines(path, python_literals=True):
        key = _id(record.get(layout.meta_item)) or _id(record.get("asin")) or _id(record.get("parent_asin"))
        if not key:
            raise InputError(path, f"metadata record has no {layout.meta_item}", "fix or remove the line", line=number)
        if key in rows:  # the 2018 metadata repeats some items; the first record wins
            continue
        rows[key] = {
            "title": _text(record.get("title")).strip(),
            "categories": _categories(record),
            "brand": _text(record.get("brand") or record.get("store")).strip(),
            "main_category": _text(record.get("main_category")).strip(),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "raw_id"
    return table.reset_index()


def import_amazon(src: Path, meta: Path | None = None) -> RawData:
    """Read an Amazon Reviews file (2018 or 2023 layout) and, optionally, its metadata file."""
    src = require_file(Path(src), "reviews file")
    layout: _Layout | None = None
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    times: list[int] = []
    texts: list[str] = []
    summaries: list[str] = []
    for number, record in read_json_lines(src):
        layout = layout or _detect(record, src, number)
        user, item = _id(record.get(layout.user)), _id(record.get(layout.item))
        if not user or not item:
            missing = layout.user if not user else layout.item
            raise InputError(src, f"record has no {missing}", "fix or remove the line", line=number)
        if layout.time not in record:
            raise InputError(src, f"record has no {layout.time}", "fix or remove the line", line=number)
        users.append(user)
        items.append(item)
        ratings.append(
            _number(record.get(layout.rating, np.nan), src, number, "rating") if layout.rating in record else np.nan
        )
        times.append(_timestamp(record[layout.time], src, number))
        texts.append(_text(record.get(layout.text)))
        summaries.append(_text(record.get(layout.summary)))
    assert layout is not None  # read_json_lines raised on an empty file
    interactions = pd.DataFrame(
        {
            "user": users,
            "item": items,
            "timestamp": np.asarray(times, dtype=np.int64),
            "rating": np.asarray(ratings, dtype=np.float64),
            "review": texts,
            "review_title": summaries,
        }
    )
    raw = RawData(interactions, timestamp_unit=layout.unit, source_format=f"amazon:{layout.name}")
    if meta is not None:
        meta_file = require_file(Path(meta), "metadata file")
        raw.items = _read_meta(meta_file, layout)
        known = raw.items["raw_id"].to_numpy()
        raw.drop_rows(
            raw.interactions["item"].isin(known).to_numpy(),
            "reviews of items missing from the metadata",
            meta_file.name,
        )
    return raw
