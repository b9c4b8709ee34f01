"""Answers written after a rationale: a completion's text, and the answer entries after its answer marker.

A completion has the reasoning tasks' structure: a rationale, then one ``Answer:`` line (the answer after the
marker, on its line or the next); an answer lists one or more entries separated by ``;`` (item titles, or a search
query). RL rewards (:mod:`llmrec.training.rewards`), evaluation and serving read answers the same way.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "Answer:"


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or the last message of a conversational completion."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def parse_answer(text: str, marker: str = MARKER, min_rationale: int = 3) -> list[str] | None:
    """The answer entries of a well-formed completion, else ``None``: a rationale of at least ``min_rationale``
    words, then exactly one line starting with ``marker``, the answer after it (same line or the next; entries
    split at ``;``).

    >>> parse_answer("He likes space films, so Star Wars.\\nAnswer: Star Wars; Alien")
    ['Star Wars', 'Alien']
    >>> parse_answer("Answer: Star Wars") is None, parse_answer("Some reason here.\\nAnswer:") is None
    (True, True)
    """
    starts = [m.start() for m in re.finditer(rf"(?m)^\s*{re.escape(marker)}", text)]
    if len(starts) != 1:
        return None
    rationale, answer = text[: starts[0]], text[starts[0] :].split(marker, 1)[1]
    if len(rationale.split()) < min_rationale:
        return None
    entries = [e.strip().strip("\"'.").strip() for e in re.split(r";|\n", answer)]
    entries = [e for e in entries if e]
    return entries or None
