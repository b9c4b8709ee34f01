"""Shared setup for the benchmark scripts' tests: an ``eval/<name>/benchmark.py`` script loaded as a module."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

EVAL = Path(__file__).resolve().parents[2] / "eval"


@pytest.fixture()
def eval_script(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Loads ``eval/<name>/benchmark.py``; its folder is importable for the test, as it is when the script runs."""

    def load(name: str) -> ModuleType:
        script = EVAL / name / "benchmark.py"
        monkeypatch.syspath_prepend(str(script.parent))  # the encoder benchmark imports recbole_peer from there
        spec = importlib.util.spec_from_file_location(f"{name}_benchmark", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
