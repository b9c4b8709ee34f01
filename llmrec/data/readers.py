"""Reading source files line by line, with exact line numbers in every error.

Importers read through these helpers so that a malformed line, a bad encoding or an empty file is reported
as ``file:line: problem; fix`` and never as a parser traceback. Files ending in ``.gz`` (or starting with the
gzip magic bytes) are decompressed on the fly.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmrec.errors import InputError
from llmrec.progress import progress_bar

_CHUNK_BYTES = 1 << 20
_ROWS_PER_FRAME = 500_000


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is an existing non-empty file, else an :class:`InputError` saying what was expected."""
    if not path.exists():
        raise InputError(path, f"{what} not found", "check the path (and the --format flag)")
    if not path.is_file():
        raise InputError(path, f"{what} is not a file", "pass the file itself")
    if path.stat().st_size == 0:
        raise InputError(path, f"{what} is empty", "pass a file with data")
    return path


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def iter_raw_lines(path: Path) -> Iterator[bytes]:
    """Yield the raw lines of ``path`` (without line endings), with a byte-progress bar for big files."""
    size = path.stat().st_size
    raw = open(path, "rb")  # noqa: SIM115 - closed below, wrapped by gzip when needed
    stream = gzip.GzipFile(fileobj=raw) if _is_gzip(path) else raw
    bar = progress_bar(size, f"reading {path.name}", unit="B", min_total=32 << 20, unit_scale=True)
    try:
        rest = b""
        while True:
            try:
                block = stream.read(_CHUNK_BYTES)
            except (OSError, EOFError, zlib.error) as err:
                raise InputError(path, f"cannot decompress ({err})", "the gzip file is truncated or corrupt") from None
            if not block:
                break
            bar.n = raw.tell()
            bar.refresh()
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            for line in lines:
                yield line[:-1] if line.endswith(b"\r") else line
        if rest:
            yield rest[:-1] if rest.endswith(b"\r") else rest
    finally:
        bar.close()
        stream.close()
        raw.close()


def iter_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for every line, decoding strictly; a bad byte names its line.

    A UTF-8 byte-order mark at the start of the file (as spreadsheet programs write it) is dropped, so it does
    not end up in the first id or header name.
    """
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    for number, line in enumerate(iter_raw_lines(path), start=1):
        if number == 1 and utf8 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        try:
            yield number, line.decode(encoding)
        except UnicodeDecodeError as err:
            raise InputError(
                path,
                f"bytes not valid {encoding} at column {err.start + 1} ({err.reason})",
                f"re-save the file as {encoding}",
                line=number,
            ) from None


def utf8_or_latin1(path: Path) -> str:
    """``"utf-8"`` when every line of ``path`` is valid UTF-8, else ``"latin-1"``.

    The older MovieLens files are latin-1 and later releases UTF-8; latin-1 text with accented letters is
    practically never valid UTF-8, so this picks the right decoding for either.
    """
    for line in iter_raw_lines(path):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            return "latin-1"
    return "utf-8"


def _frame(rows: list[list[str]], lines: list[int], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns, dtype=object)
    frame["_line"] = np.asarray(lines, dtype=np.int64)
    return frame


def read_delimited(
    path: Path,
    columns: list[str] | None,
    sep: str,
    *,
    header: bool,
    encoding: str = "utf-8",
    quoted: bool = False,
    min_fields: int | None = None,
    fix: str = "fix or remove the line",
) -> pd.DataFrame:
    """Read a delimited text file into string columns plus ``_line`` (the source line of each row).

    ``columns`` names the fields (``None``: take them from the header line). Every data line must have exactly
    as many fields as there are columns, or at least ``min_fields`` (missing trailing fields become ``""``).
    ``quoted`` enables CSV quoting (``"a, b"``); otherwise the line is split on ``sep`` as is, which also
    allows multi-character separators such as MovieLens' ``::``. Blank lines are skipped.
    """
    lines = iter_lines(path, encoding)
    if header:
        first = next((line for line in lines if line[1].strip()), None)  # the header is the first non-blank line
        if first is None:
            raise InputError(path, "file has no header line", "pass a file with a header and data")
        names = next(csv.reader([first[1]], delimiter=sep)) if quoted else first[1].split(sep)
        names = [name.strip().lstrip("\ufeff") for name in names]
        if columns is None:
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                raise InputError(
                    path,
                    f"header names {', '.join(map(repr, repeated))} more than once",
                    "give each column its own name",
                    line=first[0],
                )
            columns = names
    if columns is None:
        raise ValueError("columns are required when the file has no header")
    want = len(columns)
    least = want if min_fields is None else min_fields
    frames: list[pd.DataFrame] = []
    rows: list[list[str]] = []
    numbers: list[int] = []

    def split(text: str) -> list[str]:
        return next(csv.reader([text], delimiter=sep)) if quoted and '"' in text else text.split(sep)

    for number, text in lines:
        if not text.strip():
            continue
        fields = split(text)
        if len(fields) != want:
            if least <= len(fields) < want:
                fields = fields + [""] * (want - len(fields))
            else:
                expected = f"{want}" if least == want else f"{least} to {want}"
                raise InputError(
                    path, f"expected {expected} fields separated by {sep!r}, found {len(fields)}", fix, line=number
                )
        rows.append(fields)
        numbers.append(number)
        if len(rows) >= _ROWS_PER_FRAME:
            frames.append(_frame(rows, numbers, columns))
            rows, numbers = [], []
    if rows or not frames:
        frames.append(_frame(rows, numbers, columns))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if frame.empty:
        raise InputError(path, "file has no data lines", "pass a file with data")
    return frame


def _python_literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def read_json_lines(path: Path, python_literals: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for every JSON object line; bad JSON names its line.

    ``python_literals`` also accepts lines written as Python dict literals (single quotes), the layout of the
    2014 Amazon metadata files that many sequential-recommendation papers use.
    """
    seen = False
    for number, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            record = _python_literal(text) if python_literals else None
            if record is None:
                raise InputError(
                    path, f"bad JSON ({err.msg} at column {err.colno})", "fix or remove the line", line=number
                ) from None
        if not isinstance(record, dict):
            raise InputError(path, "expected a JSON object per line", "write one object per line", line=number)
        seen = True
        yield number, record
    if not seen:
        raise InputError(path, "file has no JSON lines", "pass a file with data")


def parse_numbers(
    frame: pd.DataFrame, column: str, path: Path, what: str, *, integer: bool, fix: str = "fix or remove the line"
) -> np.ndarray:
    """Column ``column`` as int64 or float64; the first value that is not a number is an error at its line."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna().to_numpy()
    if integer and not bad.all():
        whole = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = bad | ~np.isfinite(whole) | (np.floor(whole) != whole)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        kind = "an integer" if integer else "a number"
        line = int(frame["_line"].iat[row]) if "_line" in frame else None
        raise InputError(path, f"{what} {frame[column].iat[row]!r} is not {kind}", fix, line=line)
    if integer:
        return values.to_numpy().astype(np.int64)
    return values.to_numpy(dtype=np.float64)
