"""A batch row's item references (item ids of ``--dataset``, or titles) resolved to the catalog it answers from.

Without a dataset, a row that names its items by title is its own catalog (:class:`RowItems` with ``local``
set): its answers are grounded to those titles but carry no item ids, which would mean nothing outside the row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmrec.catalog.catalog import Catalog


class RowError(Exception):
    """A row that cannot run; reported in the errors file, the batch goes on."""


@dataclass(frozen=True)
class RowItems:
    """A rank or reason row's items: its catalog, its history and candidates as item ids of that catalog, and
    whether the catalog is the row's own titles (``local``)."""

    catalog: Catalog
    history: list[int]
    candidates: list[int]
    local: bool = False

    def item_id(self, item_id: int | None) -> int | None:
        """An item id as output: ``None`` for a row's own titles, whose ids are only positions in the row."""
        return None if self.local else item_id


def _references(values: Any, what: str) -> list[int | str]:
    if not isinstance(values, list | tuple) or not all(isinstance(v, int | str) for v in values):
        raise RowError(f"{what} must be a list of item ids or titles")
    return list(values)


def resolve_items(catalog: Catalog, values: Any, what: str) -> list[int]:
    """The item ids of ``values`` (item ids or exact titles) in ``catalog``."""
    ids = []
    for value in _references(values, what):
        if isinstance(value, int) and not isinstance(value, bool):
            if value not in catalog:
                raise RowError(f"{what}: no item with id {value} in {catalog.name}")
            ids.append(value)
        else:
            found = catalog.resolve(str(value))
            # Only the title itself (or its normalised form) names an item: "Toy Story 5" is not Toy Story.
            if found.item_id is None or found.resolved_by not in ("exact", "normalised"):
                raise RowError(f"{what}: no item titled {value!r} in {catalog.name}")
            ids.append(found.item_id)
    return ids


def row_items(row: dict[str, Any], catalog: Catalog | None, max_history: int) -> RowItems:
    """The history (its last ``max_history`` items) and candidates of a rank or reason row."""
    for name in ("history", "candidates"):
        if name not in row:
            raise RowError(f"missing field {name!r}")
    if catalog is None:
        candidates = _references(row["candidates"], "candidates")
        history = _references(row["history"], "history")
        if not all(isinstance(v, str) for v in candidates):
            raise RowError("candidates holds item ids, which need --dataset; or give titles")
        if not all(isinstance(v, str) for v in history):
            raise RowError("history holds item ids, which need --dataset; or give titles")
        if not candidates:
            raise RowError("empty candidate list")
        titles = [*candidates, *history]  # the row's own catalog: candidates first, then history
        local = Catalog(range(1, len(titles) + 1), titles, name="this row's titles")
        positions = list(range(1, len(titles) + 1))
        return RowItems(local, positions[len(candidates) :][-max_history:], positions[: len(candidates)], local=True)
    history = resolve_items(catalog, row["history"], "history")
    candidates = resolve_items(catalog, row["candidates"], "candidates")
    if not candidates:
        raise RowError("empty candidate list")
    return RowItems(catalog, history[-max_history:], candidates)
