"""The SASRec / S3-Rec text format: ``user item item item ...`` per line, items in time order.

The one-pair-per-line variant (``user item``) is the same format with one item per line: a user's lines are
concatenated in file order. Fields are separated by whitespace. There are no timestamps, so an item's position
in its user's sequence is its timestamp (``timestamp_unit`` "index"). An optional title file maps items to
titles, one ``item<TAB>title`` per line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.data.dataset import RawData
from llmrec.data.readers import iter_lines, read_delimited, require_file
from llmrec.errors import InputError


def import_sequences(src: Path, titles: Path | None = None) -> RawData:
    """Read a user-sequence file, and optionally an ``item<TAB>title`` file."""
    src = require_file(Path(src), "sequence file")
    users: list[str] = []
    items: list[str] = []
    for number, text in iter_lines(src):
        fields = text.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise InputError(
                src, "a line needs a user and at least one item", "write `user item [item ...]`", line=number
            )
        users.extend([fields[0]] * (len(fields) - 1))
        items.extend(fields[1:])
    if not users:
        raise InputError(src, "file has no data lines", "pass a file with data")
    frame = pd.DataFrame({"user": users, "item": items})
    frame["timestamp"] = frame.groupby("user", sort=False).cumcount().to_numpy(dtype=np.int64)
    raw = RawData(frame, timestamp_unit="index", source_format="sequences")
    if titles is not None:
        title_file = require_file(Path(titles), "title file")
        table = read_delimited(title_file, ["raw_id", "title"], "\t", header=False, fix="write `item<TAB>title`")
        raw.items = pd.DataFrame({"raw_id": table["raw_id"].str.strip(), "title": table["title"].str.strip()})
    return raw
