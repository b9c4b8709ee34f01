"""Answers written after a rationale: a completion's text, and the answer entries after its answer marker.

A completion has the reasoning tasks' structure: a rationale, then one ``Answer:`` line (the answer after the
marker, on its line or the next); an answer lists one or more entries separated by ``;`` (item titles, or a search
query). RL rewards (:mod:`llmrec.training.rewards`), evaluation and serving read answers the same way.

:func:`structured_answers` writes completions in that structure with any engine, the way RL rollouts of a query
are decoded (:mod:`llmrec.training.rollouts`): a rationale, the marker line, then one free answer line
(``grounding: format``) or catalog titles, one per line (``grounding: catalog``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llmrec.catalog.catalog import Catalog
from llmrec.catalog.grounding import Grounding
from llmrec.inference.engine import Engine, Request, SamplingConfig

MARKER = "Answer:"
# A free answer line's budget (a search query of a few keywords), and the rationale's before it: with the marker
# line and the end of text they fill the shipped query recipe's 64-token completions.
ANSWER_TOKENS = 24
RATIONALE_TOKENS = 36


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


def answer_turn(
    messages: list[dict[str, str]], rationale: str, marker: str = MARKER, answer: str = ""
) -> list[dict[str, str]]:
    """``messages`` with the assistant's turn so far: ``rationale``, then the marker's line (and the ``answer``
    written so far), for the engine to continue with the answer."""
    return [*messages, {"role": "assistant", "content": f"{rationale.rstrip()}\n{marker}\n{answer}"}]


def query_decoding(catalog: Catalog, grounding: str, titles: int = 1) -> tuple[Grounding | None, int]:
    """How a query run's answer line is written, from its recipe's ``grounding`` and ``query_titles``:
    ``(None, 1)``, one free line, or ``(Grounding, titles)``, that many catalog titles (``grounding: catalog``)."""
    return (Grounding(catalog), titles) if grounding == "catalog" else (None, 1)


def structured_answers(
    engine: Engine,
    prompts: list[list[dict[str, str]]],
    lora: str | Path | None = None,
    marker: str = MARKER,
    rationale_tokens: int = RATIONALE_TOKENS,
    answer_tokens: int = ANSWER_TOKENS,
    grounding: Grounding | None = None,
    titles: int = 1,
) -> list[tuple[str, str]]:
    """Each chat prompt's greedy ``(rationale, answer)``: the rationale stops at ``marker`` or after
    ``rationale_tokens`` tokens; the answer is the first non-empty line written after the marker's line (within
    ``answer_tokens`` tokens; empty if there is none), or, under ``grounding``, ``titles`` titles it allows, each
    on its own line, joined by ``"; "``. ``f"{rationale}\\n{marker}\\n{answer}"`` is the completion.
    """
    asked = SamplingConfig(max_new_tokens=rationale_tokens, stop=[marker])
    first = engine.generate([Request(messages=p, lora=lora) for p in prompts], asked)
    rationales = [r.completions[0].text.strip() for r in first]
    if grounding is not None:
        return list(zip(rationales, _grounded_titles(engine, prompts, rationales, lora, marker, grounding, titles),
                        strict=True))  # fmt: skip
    second = engine.generate(
        [Request(messages=answer_turn(p, r, marker), lora=lora) for p, r in zip(prompts, rationales, strict=True)],
        SamplingConfig(max_new_tokens=answer_tokens),
    )
    answers = [next((line.strip() for line in r.completions[0].text.splitlines() if line.strip()), "") for r in second]
    return list(zip(rationales, answers, strict=True))


def _grounded_titles(
    engine: Engine,
    prompts: list[list[dict[str, str]]],
    rationales: list[str],
    lora: str | Path | None,
    marker: str,
    grounding: Grounding,
    titles: int,
) -> list[str]:
    """Each prompt's ``titles`` greedy titles after its rationale and the marker line, one per line (each decoded
    under ``grounding``, continuing the lines before it), joined by ``"; "``."""
    written: list[list[str]] = [[] for _ in prompts]
    for _ in range(titles):
        requests = [
            Request(
                messages=answer_turn(p, r, marker, "".join(f"{t}\n" for t in lines)), lora=lora, grounding=grounding
            )  # fmt: skip
            for p, r, lines in zip(prompts, rationales, written, strict=True)
        ]
        results = engine.generate(requests, SamplingConfig(max_new_tokens=1))  # grounded: the title's own length
        for lines, result in zip(written, results, strict=True):
            completion = result.completions[0]
            lines.append(completion.title or completion.text.strip())
    return ["; ".join(lines) for lines in written]
