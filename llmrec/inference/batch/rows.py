"""Reading a batch job's input in chunks, resuming it, and writing its output.

A row is read as an :class:`InputRow`: its row number (the JSONL line, or the 1-based Parquet row) and its
fields, or the reason it could not be read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.errors import InputError, LlmrecError
from llmrec.inference.batch.config import BatchConfig


@dataclass(frozen=True)
class InputRow:
    """One input row: ``number`` (line or row number), its ``fields``, and ``unreadable`` (why the line could not
    be read as a JSON object, or ``None``)."""

    number: int
    fields: dict[str, Any] = field(default_factory=dict)
    unreadable: str | None = None

    @property
    def id(self) -> Any:
        """The row's ``id`` field (``None`` when it has none)."""
        return self.fields.get("id")

    @property
    def key(self) -> str | None:
        """The id as text, the key that resume and duplicate checks compare (``None`` without an id)."""
        return None if self.id is None else str(self.id)

    def error(self, message: str) -> dict[str, Any]:
        """This row's line in the errors file."""
        return {"row": self.number, "id": self.id, "error": message}


def read_rows(path: Path, chunk_size: int) -> Iterator[list[InputRow]]:
    """Chunks of rows from JSONL (line numbers) or Parquet (1-based row numbers), streamed."""
    if not path.exists():
        raise LlmrecError(f"{path}: no such input file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
            values = batch.to_pylist()
            yield [InputRow(number + i + 1, row) for i, row in enumerate(values)]
            number += len(values)
        return
    chunk: list[InputRow] = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                chunk.append(InputRow(number, unreadable=f"not valid JSON ({error.msg} at column {error.colno})"))
            else:
                is_object = isinstance(value, dict)
                chunk.append(InputRow(number, value if is_object else {}, None if is_object else "not a JSON object"))
            if len(chunk) == chunk_size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def finished_ids(out: Path) -> set[str]:
    """Ids already in the output; a torn last line (a crash mid-write) is cut off the file first."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with out.open("r+b") as handle:
            handle.truncate(end)
    done = set()
    for number, line in enumerate(data[:end].splitlines(), start=1):
        if line.strip():
            try:
                done.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError):
                raise InputError(
                    out, "not an output row of llmrec batch", "remove the file or the line", number
                ) from None
    return done


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows as JSONL in one write, flushed to disk."""
    if not rows:
        return
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with path.open("a") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def pending_chunks(config: BatchConfig, done: set[str]) -> Iterator[tuple[list[InputRow], int, list[dict[str, Any]]]]:
    """Input chunks minus finished ids and repeated ids: ``(rows to run, rows skipped, duplicate-id errors)``."""
    seen: set[str] = set()
    for chunk in read_rows(config.input, config.chunk_size):
        todo, skipped, duplicates = [], 0, []
        for row in chunk:
            key = row.key
            if key is not None and key in seen:
                duplicates.append(row.error("duplicate id (an earlier row has it)"))
                continue
            if key is not None:
                seen.add(key)
            if key is not None and key in done:
                skipped += 1
                continue
            todo.append(row)
        yield todo, skipped, duplicates
