"""RecBole atomic files: ``NAME.inter`` with optional ``NAME.item`` and ``NAME.user``.

Each file is tab-separated with a typed header (``user_id:token  item_id:token  rating:float
timestamp:float``). The interaction file needs ``user_id`` and ``item_id``; ``timestamp`` and ``rating`` are
used when present (without a timestamp, file order is the time order). In the item file the title is the
field named ``title``, else the first one ending in ``_title`` (``movie_title`` in ML-100K); other fields are
kept as attributes, ``float`` ones as numbers (an empty field is a missing value).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.data.dataset import RawData
from llmrec.data.readers import parse_numbers, read_delimited, require_file
from llmrec.errors import InputError

_TYPES = {"token", "token_seq", "float", "float_seq"}


def _read_atomic(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    frame = read_delimited(path, None, "\t", header=True)
    types: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for column in frame.columns:
        if column == "_line":
            continue
        name, sep, kind = column.rpartition(":")
        if not sep or kind not in _TYPES:
            raise InputError(
                path,
                f"header field {column!r} is not NAME:TYPE with TYPE one of {', '.join(sorted(_TYPES))}",
                "write a RecBole atomic header such as user_id:token",
                line=1,
            )
        types[name] = kind
        renamed[column] = name
    return frame.rename(columns=renamed), types


def _attribute_numbers(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """A ``float`` attribute column; empty fields are missing values (RecBole fills them), not errors."""
    present = frame[column].str.strip() != ""
    values = np.full(len(frame), np.nan)
    if present.any():
        values[present.to_numpy()] = parse_numbers(frame[present], column, path, column, integer=False)
    return values


def _locate(src: Path) -> tuple[Path, str]:
    if not src.exists():
        raise InputError(src, "RecBole source not found", "pass NAME.inter or the directory holding it")
    if src.is_dir():
        inter = sorted(src.glob("*.inter"))
        if not inter:
            raise InputError(src, "no .inter file in the directory", "pass a directory with NAME.inter, or the file")
        if len(inter) > 1:
            raise InputError(src, f"several .inter files ({', '.join(p.name for p in inter)})", "pass one file")
        src = inter[0]
    if src.suffix != ".inter":
        raise InputError(
            src, "not a RecBole .inter file", "pass NAME.inter or its directory, or choose another --format"
        )
    return require_file(src, "interaction file"), src.stem


def import_recbole(src: Path) -> RawData:
    """Read RecBole atomic files (``NAME.inter`` and, beside it, optional ``NAME.item`` / ``NAME.user``)."""
    inter_file, stem = _locate(Path(src))
    frame, types = _read_atomic(inter_file)
    for needed in ("user_id", "item_id"):
        if needed not in types:
            raise InputError(inter_file, f"header lacks {needed}:token", "name the user and item fields", line=1)
    if "timestamp" in frame:
        timestamps = parse_numbers(frame, "timestamp", inter_file, "timestamp", integer=False).astype(np.int64)
        unit = "s"
    else:
        timestamps = np.arange(len(frame), dtype=np.int64)
        unit = "index"
    interactions = pd.DataFrame(
        {"user": frame["user_id"].str.strip(), "item": frame["item_id"].str.strip(), "timestamp": timestamps}
    )
    if "rating" in frame:
        interactions["rating"] = parse_numbers(frame, "rating", inter_file, "rating", integer=False)
    for column in ("review", "text", "review_text"):
        if column in frame:
            interactions["review"] = frame[column]
            break
    raw = RawData(interactions, timestamp_unit=unit, source_format="recbole")

    item_file = inter_file.with_name(f"{stem}.item")
    if item_file.exists():
        items, item_types = _read_atomic(require_file(item_file, "item file"))
        if "item_id" not in items:
            raise InputError(item_file, "header lacks item_id:token", "name the item field", line=1)
        table = items.drop(columns="_line").rename(columns={"item_id": "raw_id"})
        table["raw_id"] = table["raw_id"].str.strip()
        for column, kind in item_types.items():
            if kind == "float" and column in table:
                table[column] = _attribute_numbers(items, column, item_file)
        # A field named exactly ``title`` wins over ``movie_title`` and the like; only one column may be "title".
        title = next((c for c in table.columns if c == "title"), None) or next(
            (c for c in table.columns if c.endswith("_title")), None
        )
        if title is not None and title != "title":
            table = table.rename(columns={title: "title"})
        raw.items = table
        known = raw.items["raw_id"].to_numpy()
        raw.drop_rows(
            raw.interactions["item"].isin(known).to_numpy(),
            "interactions of items missing from the item file",
            item_file.name,
        )

    user_file = inter_file.with_name(f"{stem}.user")
    if user_file.exists():
        users, _ = _read_atomic(require_file(user_file, "user file"))
        if "user_id" not in users:
            raise InputError(user_file, "header lacks user_id:token", "name the user field", line=1)
        raw.users = users.drop(columns="_line").rename(columns={"user_id": "raw_id"})
        raw.users["raw_id"] = raw.users["raw_id"].str.strip()
    return raw
