"""The review extractor: one review (with its item's title and attributes and the rating) in, facts out.

With review text, the LLM answers under a JSON schema (the engine decodes under it, so every answer parses): likes
and dislikes as an aspect (a short lowercase phrase, by the schema's pattern) and a quote that must be one of the
review's own clauses (an ``enum`` of them), features as aspects. The review sits in a data section of the user's
message; the system message and the worked example are fixed templates (``prompts/extract_facts*.jinja``), so no
review text ever reaches the system position. Without text, the rating and the item's attributes give the facts
(a rating of 4 or more likes the item's attribute terms, 2 or less dislikes them), so rating-only datasets such as
ML-100K get profiles too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from llmrec.errors import LlmrecError
from llmrec.inference.engine import Engine, Request, SamplingConfig
from llmrec.profiles.reviews import Review
from llmrec.profiles.schema import ASPECT_PATTERN, Fact, clean_text
from llmrec.prompts import render

MAX_REVIEW = 2000  # characters of a review shown to the LLM (a 100 KB review is cut, never sent whole)
MAX_CLAUSES = 16
MAX_QUOTE = 80
MAX_ITEMS = 2
EXAMPLE_ANSWER = {
    "likes": [
        {"aspect": "clear sound", "quote": "The sound is clear"},
        {"aspect": "long battery life", "quote": "the battery lasts all day"},
    ],
    "dislikes": [{"aspect": "case scratches", "quote": "the case scratches easily"}],
    "features": ["wireless", "charging case"],
}


def clauses(text: str) -> list[str]:
    """A review's clauses (split at sentence ends, commas, semicolons and "but"), cleaned and cut, at most
    ``MAX_CLAUSES``: the quotes an extraction may choose from.

    >>> clauses("Soft and warm, but the zipper broke! Love it.")
    ['Soft and warm', 'the zipper broke', 'Love it']
    """
    parts = re.split(r"[.!?;\n]|,|\bbut\b", clean_text(text, MAX_REVIEW))
    out = []
    for part in parts:
        part = part.strip(" \"'()-*:")[:MAX_QUOTE]
        if len(part) >= 3 and part not in out:
            out.append(part)
    return out[:MAX_CLAUSES]


def fact_schema(quotes: list[str], rating: float | None = None) -> dict[str, Any]:
    """The JSON schema of one review's answer: likes and dislikes quote one of ``quotes``. The rating sets which
    opinions the answer may hold: a review of 4 or 5 stars lists no dislikes, one of 1 or 2 no likes (a small model
    mistakes the polarity of a clause far more often than a reviewer's rating does)."""
    aspect = {"type": "string", "pattern": ASPECT_PATTERN}
    entry = {
        "type": "object",
        "properties": {"aspect": aspect, "quote": {"enum": quotes}},
        "required": ["aspect", "quote"],
        "additionalProperties": False,
    }

    def listed(allowed: bool) -> dict[str, Any]:
        return {"type": "array", "items": entry, "maxItems": MAX_ITEMS if allowed else 0}

    return {
        "type": "object",
        "properties": {
            "likes": listed(rating is None or rating >= 3),
            "dislikes": listed(rating is None or rating <= 3),
            "features": {"type": "array", "items": aspect, "maxItems": MAX_ITEMS},
        },
        "required": ["likes", "dislikes", "features"],
        "additionalProperties": False,
    }


def answer_bound(quotes: list[str]) -> int:
    """The most tokens an answer of :func:`fact_schema` over ``quotes`` can take: the characters of its longest
    admissible JSON (every list full, every aspect 40 characters, the longest quotes, escaped), plus the end token
    (a token is at least one character).

    >>> answer_bound(["short", "a much longer quote"]) > len('{"likes":[],"dislikes":[],"features":[]}')
    True
    """
    aspect = "a" * 40
    longest = max(quotes, key=lambda q: len(json.dumps(q)))
    entry = {"aspect": aspect, "quote": longest}
    full = {"likes": [entry] * MAX_ITEMS, "dislikes": [entry] * MAX_ITEMS, "features": [aspect] * MAX_ITEMS}
    return len(json.dumps(full, separators=(",", ":"))) + 1


def attribute_terms(attributes: str) -> list[str]:
    """The terms of an attributes text (``name: value; ...``): values split at ``|,;/`` and, where every word is
    capitalised (a genre list such as ``Animation Children's Comedy``), at spaces (see :func:`_term`).

    >>> attribute_terms("year: 1995; class: Animation Children's Comedy; main category: Office_Products")
    ['1990s', 'animation', "children's", 'comedy', 'office products']
    """
    terms: list[str] = []
    for pair in attributes.split("; "):
        value = pair.split(": ", 1)[-1]
        for part in re.split(r"[|,;/]", value):
            words = part.split()
            pieces = words if len(words) > 1 and all(w[:1].isupper() for w in words) else [part]
            terms.extend(_term(p) for p in pieces if p.strip())
    return list(dict.fromkeys(t for t in terms if t))


def _term(piece: str) -> str:
    """An attribute value as a term: a year becomes its decade (``1995`` -> ``1990s``), another bare number
    nothing; underscores read as spaces."""
    text = piece.replace("_", " ").strip().lower()
    if text.isdigit():
        return f"{int(text) // 10 * 10}s" if 1800 <= int(text) <= 2099 else ""
    return text


def rating_facts(review: Review) -> list[Fact]:
    """Facts from the rating and the item's attributes alone: likes (rating >= 4) or dislikes (rating <= 2) of the
    item's attribute terms, the rating and title as evidence; none for a middling or missing rating."""
    if review.rating is None or 2 < review.rating < 4:
        return []
    kind = "like" if review.rating >= 4 else "dislike"
    evidence = f"rated {review.title[:80]} {review.rating:g}"
    terms = attribute_terms(review.attributes)
    facts = [Fact.make(kind, term, evidence, review.review_id, review.seen) for term in terms]
    return [f for f in facts if f is not None]


def parse_answer(text: str, review: Review) -> list[Fact]:
    """Facts of one JSON answer; anything that does not fit (a quote not in the review, an aspect that normalises
    to nothing) is dropped. A text that is not JSON of the schema's shape raises ``ValueError``."""
    data = json.loads(text)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("likes", "dislikes", "features")):
        raise ValueError("the answer is not an object with likes, dislikes and features lists")
    quotes = set(clauses(review.text))
    facts: list[Fact | None] = []
    for kind, key in (("like", "likes"), ("dislike", "dislikes")):
        for entry in data[key]:
            if isinstance(entry, dict) and entry.get("quote") in quotes:
                aspect = str(entry.get("aspect", ""))
                facts.append(Fact.make(kind, aspect, entry["quote"], review.review_id, review.seen))
    for aspect in data["features"]:
        facts.append(Fact.make("feature", str(aspect), review.title[:80], review.review_id, review.seen))
    unique = {(f.kind, f.aspect): f for f in facts if f is not None}
    return list(unique.values())


class ReviewExtractor:
    """Facts from reviews through an engine (any: hf, vllm, openai), batched: ``extract(reviews)``; without an
    engine, only reviews without text (their rating's facts).

    An answer may take as many tokens as the longest JSON the schema admits (:func:`answer_bound`: two entries a
    list, aspects of 40 characters, the longest quotes), so no answer is cut off before it closes; most stop far
    sooner. ``max_new_tokens`` caps that bound.
    """

    def __init__(self, engine: Engine | None, max_new_tokens: int = 1024) -> None:
        self.engine = engine
        self.max_new_tokens = max_new_tokens
        example = render("extract_facts_example")
        self.preamble = [
            {"role": "system", "content": render("extract_facts_system")},
            {"role": "user", "content": example},
            {"role": "assistant", "content": json.dumps(EXAMPLE_ANSWER)},
        ]

    def messages(self, review: Review) -> list[dict[str, str]]:
        """The chat of one review: the fixed system message and worked example, then the review as data."""
        rating = "not given" if review.rating is None else f"{review.rating:g} of 5"
        content = render(
            "extract_facts",
            product=clean_text(review.title, 200),
            attributes=clean_text(review.attributes, 300),
            rating=rating,
            review=clean_text(review.text, MAX_REVIEW),
        )
        return [*self.preamble, {"role": "user", "content": content}]

    def extract(self, reviews: list[Review]) -> list[list[Fact] | Exception]:
        """Each review's facts (its rating's facts included), or the error that stopped its extraction (an answer
        cut off by ``max_new_tokens``, a request the engine rejected): the caller records it and retries later."""
        with_text = [r for r in reviews if clauses(r.text)]
        requests = [
            Request(messages=self.messages(r), json_schema=fact_schema(clauses(r.text), r.rating)) for r in with_text
        ]
        budget = max([answer_bound(clauses(r.text)) for r in with_text], default=0)
        answers: dict[str, Any] = {}
        if requests and self.engine is None:
            raise LlmrecError("these reviews have text, which needs an engine to extract facts from")
        if requests and self.engine is not None:
            params = SamplingConfig(max_new_tokens=min(self.max_new_tokens, budget))
            for review, result in zip(with_text, self.engine.generate(requests, params), strict=True):
                answers[review.review_id] = result.completions[0]
        out: list[list[Fact] | Exception] = []
        for review in reviews:
            facts = rating_facts(review)
            completion = answers.get(review.review_id)
            if completion is not None:
                try:
                    facts = parse_answer(completion.text, review) + facts
                except ValueError as error:  # json.JSONDecodeError is a ValueError
                    reason = "cut off by max_new_tokens" if completion.finish_reason == "length" else str(error)
                    out.append(LlmrecError(f"review {review.review_id}: the answer did not parse ({reason})"))
                    continue
            out.append(facts)
        return out
