"""Importers, one function per source format, and the pipeline that turns a source into a dataset directory."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmrec.data.dataset import Dataset, RawData, check_out, encode, read_dataset, write_dataset
from llmrec.data.importers.amazon import import_amazon
from llmrec.data.importers.movielens import import_movielens
from llmrec.data.importers.recbole import import_recbole
from llmrec.data.importers.sequences import import_sequences
from llmrec.data.importers.tabular import import_table, parse_column_mapping
from llmrec.data.preprocess import Preprocessing, preprocess
from llmrec.errors import LlmrecError

FORMATS: dict[str, str] = {
    "movielens": "MovieLens directory: ML-100K (u.data), ML-1M/10M (ratings.dat), ml-latest(-small) (ratings.csv)",
    "recbole": "RecBole atomic files: NAME.inter with optional NAME.item / NAME.user",
    "sequences": "one user per line: `user item item ...` in time order (or `user item` pairs); --titles FILE",
    "amazon": "Amazon Reviews JSON lines, 2018 or 2023 layout, gzip or plain; --meta FILE for titles",
    "csv": "CSV/TSV/Parquet with --columns user=COL,item=COL[,time=COL][,rating=COL][,review=COL][,title=COL]",
}


def read_source(
    src: Path,
    fmt: str,
    *,
    columns: str | None = None,
    titles: Path | None = None,
    meta: Path | None = None,
) -> RawData:
    """Read ``src`` with the importer of format ``fmt`` (one of :data:`FORMATS`)."""
    readers: dict[str, Callable[[], RawData]] = {
        "movielens": lambda: import_movielens(src),
        "recbole": lambda: import_recbole(src),
        "sequences": lambda: import_sequences(src, titles),
        "amazon": lambda: import_amazon(src, meta),
        "csv": lambda: import_table(src, parse_column_mapping(columns or "")),
    }
    if fmt not in readers:
        raise LlmrecError(f"--format {fmt!r} is not a known format; choose one of {', '.join(FORMATS)}")
    if fmt == "csv" and not columns:
        raise LlmrecError("--format csv needs --columns, e.g. --columns user=userId,item=movieId,time=timestamp")
    unused = {
        "--columns": columns if fmt != "csv" else None,
        "--titles": titles if fmt != "sequences" else None,
        "--meta": meta if fmt != "amazon" else None,
    }
    for flag, value in unused.items():
        if value:
            raise LlmrecError(f"{flag} does not apply to --format {fmt}; drop it")
    return readers[fmt]()


def import_dataset(
    src: Path,
    fmt: str,
    out: Path,
    *,
    options: Preprocessing | None = None,
    name: str | None = None,
    force: bool = False,
    quiet: bool = False,
    **source_args: Any,
) -> Dataset:
    """Import ``src`` into the dataset directory ``out`` (written atomically) and return it loaded.

    ``source_args`` go to the importer (``columns``, ``titles``, ``meta``). Everything dropped or skipped is
    printed to stderr (unless ``quiet``) and recorded under ``steps`` in meta.json.
    """
    out = Path(out)
    check_out(out, force)
    options = options or Preprocessing()
    raw = read_source(Path(src), fmt, **source_args)
    preprocess(raw, options)
    interactions, items, users = encode(raw, options.tie_order)
    untitled = int((items["title"] == items["raw_id"]).sum()) if raw.items is not None else len(items)
    meta = {
        "name": name or out.name,
        "source": {"path": str(Path(src).resolve()), "format": raw.source_format or fmt},
        "options": {k: v for k, v in vars(options).items()},
        "timestamp_unit": raw.timestamp_unit,
        "steps": [vars(step) for step in raw.steps],
        "items_without_title": untitled,
    }
    write_dataset(out, interactions, items, users, meta, force=force)
    if not quiet:
        for step in raw.steps:
            print(f"llmrec: {step.describe()}", file=sys.stderr)
        if untitled:
            print(f"llmrec: {untitled:,} items have no title; their raw id stands in for it", file=sys.stderr)
    return read_dataset(out)


__all__ = ["FORMATS", "import_dataset", "read_source"]
