"""The dataset directory: what every importer writes and every other module reads.

A dataset directory holds ``interactions.parquet`` (user_id, item_id, timestamp, optional rating and review),
``items.parquet`` (item_id, raw_id, title, optional text attributes), ``users.parquet`` (user_id, raw_id, optional
attributes; always written, so raw user ids survive for output) and
``meta.json`` (name, source, format version, counts, the import report and the sha256 of each file).
Internal ids are dense integers from 1 (0 is padding); raw ids are kept for output. Interactions are sorted by
user, then time; ties in time keep the source order.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_string_dtype

from llmrec import __version__
from llmrec.errors import LlmrecError
from llmrec.runs import sha256_file

FORMAT_VERSION = 1
FILES = ("interactions.parquet", "items.parquet", "users.parquet")
SPLITS = "splits"  # what llmrec caches beside a dataset's files: the c20 candidates of its splits


@dataclass
class ImportStep:
    """One thing an import dropped or skipped, with how many rows, users and items it removed."""

    step: str
    rows: int
    users: int = 0
    items: int = 0
    detail: str = ""

    def describe(self) -> str:
        """A one-line human summary, e.g. ``k-core (min_user=5): dropped 120 rows, 30 users, 12 items``."""
        text = f"{self.step}: dropped {self.rows:,} rows, {self.users:,} users, {self.items:,} items"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass
class RawData:
    """What an importer reads, before dense ids: raw string ids, source order preserved.

    ``interactions`` has ``user``, ``item`` (str), ``timestamp`` (int64) and optionally ``rating`` (float64),
    ``review`` (str) and other per-interaction text columns. ``items`` has ``raw_id`` and ``title`` plus any
    attributes; ``None`` when the source carries no item metadata (titles then fall back to raw ids).
    """

    interactions: pd.DataFrame
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    steps: list[ImportStep] = field(default_factory=list)
    timestamp_unit: str = "s"
    source_format: str = ""

    def drop_rows(self, keep: np.ndarray, step: str, detail: str = "") -> None:
        """Keep only the interaction rows where ``keep`` is true and record what that dropped."""
        frame = self.interactions
        if keep.all():
            return
        kept = frame[keep]
        self.steps.append(
            ImportStep(
                step,
                rows=int(len(frame) - len(kept)),
                users=int(frame["user"].nunique() - kept["user"].nunique()),
                items=int(frame["item"].nunique() - kept["item"].nunique()),
                detail=detail,
            )
        )
        self.interactions = kept.reset_index(drop=True)


def _id_order(raw: pd.Series) -> pd.Index:
    """Distinct raw ids in id order: numeric when every id is an integer, else lexicographic."""
    unique = pd.Index(raw.unique())
    numeric = pd.to_numeric(unique, errors="coerce")
    if not np.isnan(numeric.to_numpy(dtype=np.float64)).any():
        return unique[np.argsort(numeric.to_numpy(dtype=np.float64), kind="stable")]
    return unique.sort_values()


def encode(raw: RawData, tie_order: str = "source") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Dense ids from 1 and the sorted interaction table.

    Returns ``(interactions, items, users)``. Users and items are numbered in raw-id order; only items and
    users that have an interaction are kept. Rows are sorted by user then timestamp, stably, so ties keep the
    source order (``tie_order="source"``) or are ordered by item id (``tie_order="item"``).
    """
    frame = raw.interactions
    users = _id_order(frame["user"])
    items = _id_order(frame["item"])
    user_ids = users.get_indexer(frame["user"]) + 1
    item_ids = items.get_indexer(frame["item"]) + 1
    out = pd.DataFrame({"user_id": user_ids.astype(np.int64), "item_id": item_ids.astype(np.int64)})
    out["timestamp"] = frame["timestamp"].to_numpy(dtype=np.int64)
    for column in frame.columns:
        if column not in ("user", "item", "timestamp", "_line"):
            out[column] = frame[column].to_numpy()
    keys = ["user_id", "timestamp"] + (["item_id"] if tie_order == "item" else [])
    out = out.sort_values(keys, kind="stable").reset_index(drop=True)

    catalog = pd.DataFrame({"item_id": np.arange(1, len(items) + 1, dtype=np.int64), "raw_id": items.astype(str)})
    if raw.items is not None:
        meta = raw.items.drop_duplicates("raw_id").set_index("raw_id")
        catalog = catalog.join(meta, on="raw_id")
    if "title" not in catalog:
        catalog["title"] = catalog["raw_id"]
    titles = catalog["title"].astype("string")
    catalog["title"] = titles.where(titles.notna() & (titles.str.strip() != ""), catalog["raw_id"]).astype(str)
    catalog = catalog[
        ["item_id", "raw_id", "title"] + [c for c in catalog.columns if c not in ("item_id", "raw_id", "title")]
    ]

    user_table = pd.DataFrame({"user_id": np.arange(1, len(users) + 1, dtype=np.int64), "raw_id": users.astype(str)})
    if raw.users is not None:
        user_table = user_table.join(raw.users.drop_duplicates("raw_id").set_index("raw_id"), on="raw_id")
    return out, catalog, user_table


def check_out(out: Path, force: bool) -> None:
    """Raise unless ``out`` may be written: absent, or (with ``force``) a dataset directory that may be replaced.

    ``force`` replaces only what an import wrote (a directory holding nothing but dataset files), so a mistyped
    ``--out`` can never delete a source directory or an unrelated file.
    """
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise LlmrecError(f"{out}: already exists; pass --force to overwrite it or choose another --out")
    if not out.is_dir() or out.is_symlink():
        raise LlmrecError(
            f"{out}: exists and is not a dataset directory; --force will not replace it, choose another --out"
        )
    foreign = sorted(p.name for p in out.iterdir() if p.name not in (*FILES, "meta.json", SPLITS))
    if foreign:
        raise LlmrecError(
            f"{out}: not a dataset directory (it holds {', '.join(foreign[:3])}); --force replaces only dataset "
            "directories, choose another --out"
        )


def write_dataset(
    out: Path,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    meta: dict[str, Any],
    force: bool = False,
) -> Path:
    """Write a dataset directory atomically: everything goes to a temporary sibling, then one rename.

    A failure at any point leaves no ``out`` behind. An existing ``out`` is replaced only with ``force``, and only
    when it is a dataset directory (see :func:`check_out`).
    """
    out = Path(out)
    check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        interactions.to_parquet(tmp / "interactions.parquet", index=False)
        items.to_parquet(tmp / "items.parquet", index=False)
        users.to_parquet(tmp / "users.parquet", index=False)
        meta = dict(meta)
        meta["format_version"] = FORMAT_VERSION
        meta["llmrec_version"] = __version__
        meta["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        meta["counts"] = {
            "users": int(interactions["user_id"].nunique()),
            "items": int(len(items)),
            "interactions": int(len(interactions)),
        }
        meta["sha256"] = {name: sha256_file(tmp / name) for name in FILES if (tmp / name).exists()}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class Dataset:
    """A loaded dataset directory."""

    path: Path
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        """The dataset's name (from meta.json)."""
        return str(self.meta.get("name", self.path.name))

    @property
    def num_users(self) -> int:
        """Number of users; user ids run from 1 to this."""
        return int(self.interactions["user_id"].max()) if len(self.interactions) else 0

    @property
    def num_items(self) -> int:
        """Number of items; item ids run from 1 to this (0 is padding)."""
        return int(len(self.items))

    @cached_property
    def titles(self) -> np.ndarray:
        """Item titles indexed by item id (index 0 is the padding item, an empty string)."""
        return np.concatenate([[""], self.items.sort_values("item_id")["title"].astype(str).to_numpy()])

    @cached_property
    def text_attributes(self) -> dict[int, dict[str, str]]:
        """Each item's non-empty text attributes, ``{item_id: {name: value}}``, in item id order: the item table's
        string columns but ``raw_id`` and ``title``, underscores in names as spaces (``release year``)."""
        items = self.items.sort_values("item_id")
        columns = [c for c in items.columns if c not in ("item_id", "raw_id", "title") and is_string_dtype(items[c])]
        return {
            int(row[0]): {
                c.replace("_", " "): v.strip()
                for c, v in zip(columns, row[1:], strict=True)
                if isinstance(v, str) and v.strip()
            }
            for row in items[["item_id", *columns]].itertuples(index=False)
        }

    @cached_property
    def attribute_texts(self) -> dict[int, str]:
        """Each item's text attributes as one line, ``{item_id: "name: value; ..."}`` (empty where it has none),
        as prompts, item texts and reviews show them."""
        return {
            item: "; ".join(f"{name}: {value}" for name, value in values.items())
            for item, values in self.text_attributes.items()
        }

    @cached_property
    def described_titles(self) -> np.ndarray:
        """Item titles indexed by item id, each followed by its text attributes in parentheses, as in ``GoldenEye
        (release year: 1995; class: Action Adventure Thriller)`` (a bare title where the item has none)."""
        out = self.titles.astype(object)
        for item, text in self.attribute_texts.items():
            if text:
                out[item] += f" ({text})"
        return out

    @cached_property
    def sequences(self) -> list[np.ndarray]:
        """Each user's items in time order, indexed by user id (index 0 is empty)."""
        users = self.interactions["user_id"].to_numpy()
        items = self.interactions["item_id"].to_numpy()
        bounds = np.searchsorted(users, np.arange(0, self.num_users + 2))
        return [items[bounds[u] : bounds[u + 1]] for u in range(self.num_users + 1)]

    @cached_property
    def item_users(self) -> np.ndarray:
        """``[N+1]`` by item id: how many users interacted with each item (a user counted once; index 0 is 0)."""
        return user_counts(self.sequences, self.num_items)

    def user_id(self, user: str) -> int:
        """The internal id of a user given its raw id (as in the source), or ``#N`` for internal id N."""
        if user.startswith("#") and user[1:].isdigit():
            uid = int(user[1:])
            if not 1 <= uid <= self.num_users:
                raise LlmrecError(f"{self.path}: no user #{uid}; internal ids run from 1 to {self.num_users}")
            return uid
        uid = self._user_ids.get(user)
        if uid is None:
            raise LlmrecError(
                f"{self.path}: no user with raw id {user!r}; pass a raw id from the source, or #N for internal id N"
            )
        return uid

    @cached_property
    def _user_ids(self) -> dict[str, int]:
        """Raw id -> internal id, built once (a server looks a user up per request)."""
        return dict(zip(self.users["raw_id"].astype(str), self.users["user_id"].astype(int).tolist(), strict=True))


def user_counts(sequences: list[np.ndarray], num_items: int) -> np.ndarray:
    """``[N+1]`` by item id: how many of ``sequences`` (one per user) hold each item, a user counted once.

    >>> user_counts([np.array([1, 2, 1]), np.array([2]), np.array([], dtype=np.int64)], 3).tolist()
    [0, 1, 2, 0]
    """
    counts = np.zeros(num_items + 1, dtype=np.int64)
    for sequence in sequences:
        if len(sequence):
            counts[np.unique(sequence)] += 1
    return counts


def verify(path: Path, meta: dict[str, Any]) -> None:
    """Check a dataset directory's files against the sha256 recorded in its meta.json."""
    for name, digest in meta.get("sha256", {}).items():
        file = path / name
        if not file.exists() or sha256_file(file) != digest:
            raise LlmrecError(
                f"{file}: missing or modified since import (sha256 mismatch); re-import the dataset with --force"
            )


def read_dataset(path: Path, check: bool = True) -> Dataset:
    """Load a dataset directory, checking its format version and (by default) its files' sha256."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.exists():
        raise LlmrecError(
            f"{path}: not a dataset directory (no meta.json); create one with `llmrec data import` "
            "or use a builtin name such as ml-100k"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as err:
        raise LlmrecError(f"{meta_file}:{err.lineno}: not valid JSON; re-import the dataset with --force") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise LlmrecError(
            f"{meta_file}: dataset format version {meta.get('format_version')} is not supported "
            f"(this llmrec reads {FORMAT_VERSION}); re-import the dataset with this version of llmrec"
        )
    if check:
        verify(path, meta)
    return Dataset(
        path=path,
        interactions=_read_table(path / "interactions.parquet"),
        items=_read_table(path / "items.parquet"),
        users=_read_table(path / "users.parquet"),
        meta=meta,
    )


def _read_table(file: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(file)
    except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a missing or broken file
        raise LlmrecError(f"{file}: cannot read ({type(err).__name__}); re-import the dataset with --force") from None
