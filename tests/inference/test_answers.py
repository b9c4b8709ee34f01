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


def test_a_grounded_query_names_catalog_titles_after_its_rationale(hf_engine, catalog) -> None:
    from llmrec.catalog.grounding import Grounding
    from llmrec.inference.answers import structured_answers

    prompts = [
        [{"role": "user", "content": f"The user watched {films}. Reason, then write Answer: and three film titles."}]
        for films in ("Star Wars and Alien", "Fargo and Heat")
    ]
    answers = structured_answers(hf_engine, prompts, grounding=Grounding(catalog), titles=3)
    assert len(answers) == 2
    for rationale, query in answers:
        named = query.split("; ")
        assert rationale and len(named) == 3 and set(named) <= set(catalog.titles), (rationale, query)
        assert parse_answer(f"{rationale}\nAnswer:\n{query}") is not None  # well-formed as the format reward reads it
    # The same titles as one request at a time: the lines before a title are what it continues.
    assert structured_answers(hf_engine, prompts[:1], grounding=Grounding(catalog), titles=3) == answers[:1]
