"""Where llmrec keeps its cache: converted models, prepared builtin datasets."""

from __future__ import annotations

import os
from pathlib import Path


def llmrec_home() -> Path:
    """The cache root: ``$LLMREC_HOME`` if set, else ``~/.cache/llmrec``."""
    return Path(os.environ.get("LLMREC_HOME") or Path.home() / ".cache" / "llmrec").expanduser()
