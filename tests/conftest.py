"""Shared test setup: an isolated llmrec cache per test session, offline hubs, CPU only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ["CUDA_VISIBLE_DEVICES"] = ""


@pytest.fixture(scope="session", autouse=True)
def llmrec_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test session starts from an empty cache, so lazy preparation is exercised for real."""
    home = tmp_path_factory.mktemp("llmrec-home")
    os.environ["LLMREC_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def ml100k(llmrec_home: Path):
    """The builtin ML-100K dataset, imported once per session from the recbole wheel."""
    from llmrec.data.builtin import load_dataset

    return load_dataset("ml-100k")
