"""Shipped SFT recipes (``*.yaml`` files in this package, also reachable as the top-level ``adapters/``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped with llmrec (file names without ``.yaml``)."""
    return sorted(f.name[: -len(".yaml")] for f in resources.files(__package__).iterdir() if f.name.endswith(".yaml"))


def shipped_recipe(name: str) -> Path | None:
    """The file of shipped recipe ``name`` (with or without ``.yaml``), or ``None``."""
    file = resources.files(__package__) / (name if name.endswith(".yaml") else f"{name}.yaml")
    return Path(str(file)) if file.is_file() else None
