"""Prompt templates (``*.jinja`` files in this package, also reachable as the top-level ``prompts/``), by name.

>>> "Toy Story" in render("rank_candidates", history=["Heat"], candidates=["Toy Story", "Fargo"])
True
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from llmrec.errors import LlmrecError


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_source), undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )


@cache  # the shipped templates do not change while a process runs; rendering reads them once
def _source(name: str) -> str | None:
    file = resources.files(__package__) / f"{name}.jinja"
    return file.read_text() if file.is_file() else None


def available() -> list[str]:
    """Names of the shipped templates."""
    return sorted(
        p.name.removesuffix(".jinja") for p in resources.files(__package__).iterdir() if p.name.endswith(".jinja")
    )


def render(name: str, **variables: Any) -> str:
    """Render template ``name`` (without ``.jinja``); a missing template or variable is a clear error."""
    import jinja2

    if _source(name) is None:
        raise LlmrecError(f"no prompt template {name!r}; shipped templates: {', '.join(available())}")
    try:
        return _environment().get_template(name).render(**variables).strip()
    except jinja2.UndefinedError as error:
        raise LlmrecError(f"prompt template {name!r}: {error}; pass it when rendering") from None


def with_counts(titles: list[str], counts: Sequence[int] | None) -> list[str]:
    """Candidates as a prompt shows them: each title followed by how many users chose it when ``counts`` (one per
    title) are given, else the titles alone.

    >>> with_counts(["Heat", "Fargo"], [1, 12])
    ['Heat (chosen by 1 user)', 'Fargo (chosen by 12 users)']
    """
    if counts is None:
        return list(titles)
    return [f"{t} (chosen by {int(n)} user{'' if int(n) == 1 else 's'})" for t, n in zip(titles, counts, strict=True)]
