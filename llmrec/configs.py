"""Config dataclasses built from dicts (YAML sections, saved ``config.json`` files)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from llmrec.errors import LlmrecError

T = TypeVar("T")


def config_from_dict(cls: type[T], values: Mapping[str, Any] | None, what: str) -> T:
    """``cls(**values)``, naming any unknown key and the known fields (``what`` names the config in the error).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Sizes:
    ...     hidden: int = 8
    >>> config_from_dict(Sizes, {"hidden": 4}, "sizes")
    Sizes(hidden=4)
    >>> config_from_dict(Sizes, {"width": 4}, "sizes")
    Traceback (most recent call last):
    llmrec.errors.LlmrecError: sizes config has no field(s) width; known fields: hidden
    """
    values = dict(values or {})
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        listed = ", ".join(sorted(known))
        raise LlmrecError(f"{what} config has no field(s) {', '.join(unknown)}; known fields: {listed}")
    return cls(**values)
