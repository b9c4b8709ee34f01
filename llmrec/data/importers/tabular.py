"""Any CSV, TSV or Parquet file of interactions, with a column mapping.

``--columns user=COL,item=COL[,time=COL][,rating=COL][,review=COL][,title=COL]``: ``user`` and ``item`` are
required. ``time`` may hold numbers (kept as they are) or date strings (converted to Unix seconds); without it,
file order is the time order. ``title`` gives each item's title (its first non-empty value wins).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.data.dataset import RawData
from llmrec.data.readers import parse_numbers, read_delimited, require_file
from llmrec.errors import InputError, LlmrecError

ROLES = ("user", "item", "time", "rating", "review", "title")


def parse_column_mapping(text: str) -> dict[str, str]:
    """Parse ``user=a,item=b`` into ``{"user": "a", "item": "b"}``.

    >>> parse_column_mapping("user=userId, item=movieId,time=ts")
    {'user': 'userId', 'item': 'movieId', 'time': 'ts'}
    """
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, sep, column = part.partition("=")
        role, column = role.strip(), column.strip()
        if not sep or not column or role not in ROLES:
            raise LlmrecError(
                f"--columns: cannot read {part!r}; write ROLE=COLUMN pairs with ROLE one of {', '.join(ROLES)}, "
                "e.g. --columns user=userId,item=movieId,time=timestamp"
            )
        mapping[role] = column
    for role in ("user", "item"):
        if role not in mapping:
            raise LlmrecError(f"--columns: the {role} column is required, e.g. --columns user=userId,item=movieId")
    return mapping


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a broken file
            raise InputError(
                path, f"cannot read Parquet ({type(err).__name__}: {err})", "pass a valid Parquet file"
            ) from None
        if frame.empty:
            raise InputError(path, "file has no rows", "pass a file with data")
        frame = frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
        frame["_line"] = np.arange(1, len(frame) + 1, dtype=np.int64)
        return frame
    sep = "\t" if path.suffix in (".tsv", ".tab") or path.name.endswith((".tsv.gz",)) else ","
    return read_delimited(path, None, sep, header=True, quoted=True)


def _missing_time(frame: pd.DataFrame, column: str, path: Path, missing: np.ndarray) -> None:
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise InputError(path, f"{column} is missing", "fill or remove the row", line=int(frame["_line"].iat[row]))


def _unix_seconds(values: pd.Series) -> np.ndarray:
    """Datetimes (naive ones taken as UTC) as whole Unix seconds."""
    if values.dt.tz is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.astype("datetime64[s]").astype(np.int64).to_numpy()


def _times(frame: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    values = frame[column]
    if pd.api.types.is_bool_dtype(values):
        raise InputError(path, f"time column {column!r} holds booleans", "map another --columns time=")
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        _missing_time(frame, column, path, ~np.isfinite(numbers))
        return values.to_numpy().astype(np.int64)
    if pd.api.types.is_datetime64_any_dtype(values):
        _missing_time(frame, column, path, values.isna().to_numpy())
        return _unix_seconds(values)
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        if pd.api.types.is_integer_dtype(numeric):  # exact, even for nanosecond stamps beyond float precision
            return numeric.to_numpy(dtype=np.int64)
        return parse_numbers(frame, column, path, "time", integer=False).astype(np.int64)
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise InputError(
            path,
            f"time {values.iat[row]!r} is neither a number nor a date",
            "fix the value or map another --columns time=",
            line=int(frame["_line"].iat[row]),
        )
    return _unix_seconds(parsed)


def import_table(src: Path, columns: dict[str, str]) -> RawData:
    """Read a CSV/TSV/Parquet interaction table through a role→column mapping."""
    src = require_file(Path(src), "interaction table")
    frame = _read(src)
    missing = [f"{role}={name}" for role, name in columns.items() if name not in frame.columns]
    if missing:
        present = ", ".join(c for c in frame.columns if c != "_line")
        raise InputError(
            src,
            f"--columns names missing column(s) {', '.join(missing)}",
            f"the file has: {present}",
            line=1 if src.suffix != ".parquet" else None,
        )
    user, item = frame[columns["user"]].astype(str).str.strip(), frame[columns["item"]].astype(str).str.strip()
    for role, values in (("user", user), ("item", item)):
        empty = (values == "") | (values == "nan")
        if empty.any():
            row = int(np.flatnonzero(empty.to_numpy())[0])
            raise InputError(src, f"empty {role} id", "fill or remove the line", line=int(frame["_line"].iat[row]))
    if "time" in columns:
        timestamps, unit = _times(frame, columns["time"], src), "s"
    else:
        timestamps, unit = np.arange(len(frame), dtype=np.int64), "index"
    interactions = pd.DataFrame({"user": user.to_numpy(), "item": item.to_numpy(), "timestamp": timestamps})
    if "rating" in columns:
        interactions["rating"] = parse_numbers(frame, columns["rating"], src, "rating", integer=False)
    if "review" in columns:
        interactions["review"] = frame[columns["review"]].fillna("").astype(str).to_numpy()
    raw = RawData(interactions, timestamp_unit=unit, source_format="csv")
    if "title" in columns:
        titles = pd.DataFrame(
            {"raw_id": item.to_numpy(), "title": frame[columns["title"]].fillna("").astype(str).to_numpy()}
        )
        titles = titles[titles["title"].str.strip() != ""].drop_duplicates("raw_id")
        raw.items = titles
    return raw
