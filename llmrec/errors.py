"""Errors a user can fix. The CLI prints their message as one line and exits non-zero, without a traceback."""

from __future__ import annotations

from pathlib import Path


class LlmrecError(Exception):
    """An error caused by input or state the user controls; its message says what, where, and what to do."""


class InputError(LlmrecError):
    """Bad input data: names the file, the line (when one applies), the problem and the fix.

    >>> str(InputError("ratings.csv", "rating 'x' is not a number", "fix or remove the line", line=7))
    "ratings.csv:7: rating 'x' is not a number; fix or remove the line"
    """

    def __init__(self, path: str | Path, problem: str, fix: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}; {fix}")
