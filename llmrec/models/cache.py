"""Cache entries that are complete or absent, never half-written.

An entry is a directory built in a temporary sibling and renamed into place; its last file is a manifest with
the size and sha256 of every other file. An entry whose manifest is missing or does not match its files (a
conversion killed midway, a truncated or modified file) is invalid: it is removed and rebuilt, never loaded.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmrec.runs import sha256_file

MANIFEST = "llmrec-manifest.json"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(root: Path, info: dict[str, Any]) -> None:
    """Record every file of ``root`` (size and sha256) and ``info`` in the entry's manifest."""
    files = {str(p.relative_to(root)): {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in _files(root)}
    (root / MANIFEST).write_text(json.dumps({"info": info, "files": files}, indent=2) + "\n")


def check_entry(root: Path, deep: bool = True) -> str | None:
    """``None`` if ``root`` is a complete, unmodified entry, else the reason it is not.

    ``deep`` also compares each file's sha256 (otherwise only sizes).
    """
    manifest = root / MANIFEST
    if not manifest.exists():
        return "no manifest (incomplete)"
    try:
        recorded = json.loads(manifest.read_text())["files"]
    except (json.JSONDecodeError, KeyError):
        return "unreadable manifest"
    present = {str(p.relative_to(root)) for p in _files(root)}
    if present != set(recorded):
        return "files differ from the manifest"
    for name, expected in recorded.items():
        file = root / name
        if file.stat().st_size != expected["size"]:
            return f"{name} has the wrong size"
        if deep and sha256_file(file) != expected["sha256"]:
            return f"{name} has the wrong checksum"
    return None


def read_info(root: Path) -> dict[str, Any]:
    """The ``info`` recorded in an entry's manifest."""
    return json.loads((root / MANIFEST).read_text())["info"]


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_entry(
    root: Path, build: Callable[[Path], dict[str, Any]], *, force: bool = False, what: str = "cache entry"
) -> tuple[Path, bool]:
    """Return ``(root, built)``: a valid entry at ``root``, building it first if it is missing or invalid.

    ``build(tmp)`` writes the entry's files into ``tmp`` and returns the info for the manifest. Concurrent
    callers wait on a lock, so only one builds.
    """
    root = Path(root)
    with locked(root.parent / f".{root.name}.lock"):
        if root.exists() and not force:
            problem = check_entry(root)
            if problem is None:
                return root, False
            print(f"llmrec: {what} at {root} is invalid ({problem}); rebuilding it", file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".tmp", dir=root.parent))
        try:
            info = build(tmp)
            write_manifest(tmp, info)
            os.chmod(tmp, 0o755)
            if root.exists():
                shutil.rmtree(root)
            os.rename(tmp, root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for stale in root.parent.glob(f".{root.name}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    return root, True
