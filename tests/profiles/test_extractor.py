"""The review extractor on the bundled LLM (hf engine): answers that always parse, facts quoted from the review,
rating-only facts, and hostile reviews that never reach an instruction position nor break the profile."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmrec.profiles.extractor import ReviewExtractor, clauses, fact_schema, parse_answer, rating_facts
from llmrec.profiles.reviews import Review, dataset_reviews
from llmrec.profiles.schema import KINDS, MAX_ASPECT, MAX_EVIDENCE, Fact, render_profile

HOSTILE = json.loads((Path(__file__).parent / "data" / "hostile.json").read_text())
HOSTILE += ["A" * 100_000, "great " * 20_000]  # 100 KB reviews


def review(text: str, rating: float | None = 4.0, n: int = 0) -> Review:
    return Review(f"r{n}", "u1", 1, "Plush Lamb Soft Toy", "main category: Toys & Games", rating, text, n + 1)


@pytest.fixture(scope="module")
def extractor(hf_engine):
    return ReviewExtractor(hf_engine)


def test_every_answer_parses_and_quotes_the_review(extractor, amazon) -> None:
    reviews = dataset_reviews(amazon)[:6]
    results = extractor.extract(reviews)
    assert all(isinstance(r, list) for r in results), results
    for item, facts in zip(reviews, results, strict=True):
        quotes = set(clauses(item.text))
        for fact in facts:
            assert fact.kind in KINDS and len(fact.aspect) <= MAX_ASPECT
            if fact.kind != "feature" and not fact.evidence.startswith("rated "):
                assert fact.evidence in quotes  # a like or dislike quotes one of the review's own clauses
        polarity = {f.kind for f in facts if not f.evidence.startswith("rated ")}
        if item.rating >= 4:
            assert "dislike" not in polarity  # the rating decides which opinions a review may hold
        if item.rating <= 2:
            assert "like" not in polarity


def test_a_rating_without_text_gives_facts_from_the_items_attributes(ml100k) -> None:
    first = [r for r in dataset_reviews(ml100k) if r.user == "196"][:5]
    for item in first:
        facts = rating_facts(item)
        if item.rating >= 4:
            assert facts and {f.kind for f in facts} == {"like"}
            assert all(f.evidence.startswith("rated ") for f in facts)
        elif item.rating <= 2:
            assert facts and {f.kind for f in facts} == {"dislike"}
        else:
            assert facts == []
    toy = Review("r", "u", 1, "Toy Story", "release year: 1995; class: Animation Children's Comedy", 5.0, "", 1)
    assert [f.aspect for f in rating_facts(toy)] == ["1990s", "animation", "children's", "comedy"]


def test_hostile_reviews_stay_data(extractor, updater) -> None:
    reviews = [review(text, rating=3.0, n=n) for n, text in enumerate(HOSTILE)]
    for item in reviews:
        chat = extractor.messages(item)
        system = chat[0]["content"]
        body = item.text.strip()
        assert not body or body[:20] not in system  # the review never reaches the system message
        assert chat[-1]["role"] == "user" and len(chat[-1]["content"]) < 2600  # a 100 KB review is cut
    results = extractor.extract(reviews)
    profile = None
    for facts in results:
        assert isinstance(facts, list), facts  # every answer parses: none is lost
        for fact in facts:
            assert isinstance(fact, Fact) and len(fact.evidence) <= MAX_EVIDENCE
            assert not {"<", ">"} & set(fact.aspect + fact.evidence)
        profile = updater.merge(profile, facts, "u1")
    text = render_profile(profile)
    assert updater.tokens(text) <= updater.budget
    for word in ("ignore", "instructions", "disregard", "<|im_start|>", "system prompt"):
        assert word not in text.lower()


def test_answers_of_the_wrong_shape_are_errors_not_facts() -> None:
    item = review("Soft and snuggly, but the seams tore.")
    with pytest.raises(ValueError):
        parse_answer('{"likes": "all"}', item)
    with pytest.raises(ValueError):
        parse_answer("not json", item)
    good = parse_answer(json.dumps({"likes": [{"aspect": "Soft!", "quote": "Soft and snuggly"},
                                              {"aspect": "x", "quote": "not in the review"}],
                                    "dislikes": [], "features": ["plush"]}), item)  # fmt: skip
    assert [(f.kind, f.aspect) for f in good] == [("like", "soft"), ("feature", "plush")]
    schema = fact_schema(clauses(item.text), 5.0)
    assert schema["properties"]["dislikes"]["maxItems"] == 0 and schema["properties"]["likes"]["maxItems"] == 2
