"""Answers after a rationale: what counts as a well-formed completion, and its answer entries."""

from __future__ import annotations

import pytest

from llmrec.inference.answers import completion_text, parse_answer

WELL = "The user likes science fiction, so a space film fits.\nAnswer: "


@pytest.mark.parametrize(
    ("text", "entries"),
    [
        (WELL + "Star Wars", ["Star Wars"]),
        (WELL + "\nStar Wars; Fargo", ["Star Wars", "Fargo"]),
        ("Answer: Star Wars", None),  # no rationale
        (WELL, None),  # empty answer
        (WELL + "Star Wars\nAnswer: Fargo", None),  # two answer lines
        ("The user likes science fiction a lot.", None),  # no answer line
        ("", None),
    ],
)
def test_answers_parse_only_when_well_formed(text: str, entries) -> None:
    assert parse_answer(text) == entries


def test_completion_text_reads_strings_and_chat_completions() -> None:
    assert completion_text("Answer: x") == "Answer: x"
    assert completion_text([{"role": "assistant", "content": "Because.\nAnswer: Fargo"}]) == "Because.\nAnswer: Fargo"
