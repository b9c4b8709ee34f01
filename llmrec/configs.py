"""Config dataclasses built from dicts (YAML sections, saved ``config.json`` files), and resolving their defaults."""

from __future__ import annotations

import os
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


def resolve_threads(threads: int, processes: int = 1) -> int:
    """A config's torch thread count: ``threads``, or when 0 the cores this process may run on (its CPU affinity,
    so a job pinned with ``taskset`` gets what it was given, not the machine's count) shared by ``processes``.

    >>> resolve_threads(3, processes=2)
    3
    >>> resolve_threads(0) == len(os.sched_getaffinity(0))
    True
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return threads or max(1, cores // processes)
