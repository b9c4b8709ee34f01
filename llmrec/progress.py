"""Progress bars on stderr for long work (tqdm, hidden for small jobs)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def progress_bar(total: float | None, desc: str, unit: str = "it", min_total: float = 0, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; disabled when ``total`` is below ``min_total`` (small jobs stay quiet)."""
    disable = total is not None and total < min_total
    return tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable, leave=False, dynamic_ncols=True, **kwargs
    )
