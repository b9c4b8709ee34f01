"""Building profiles from a dataset's reviews (``llmrec profiles build``): every user's reviews in time order,
extracted in batches through the engine, each applied in its own transaction.

Resumable and idempotent by review: a review is marked applied in the same transaction as the profile version it
made, so a killed build, run again, skips every applied review and never applies one twice. A review whose
extraction failed is recorded with its error and tried again by the next build (its rating's facts are not applied
alone: the review is applied whole, or not yet).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from llmrec.profiles.extractor import Review, ReviewExtractor
from llmrec.profiles.sql import SQLStore
from llmrec.progress import progress_bar


@dataclass
class BuildSummary:
    """What a build did: reviews applied and skipped (applied before), failures, time and extraction speed."""

    applied: int = 0
    skipped: int = 0
    failed: int = 0
    users: int = 0
    seconds: float = 0.0
    extract_seconds: float = 0.0
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def seconds_per_review(self) -> float:
        """Extraction time per extracted review."""
        done = self.applied + self.failed
        return self.extract_seconds / done if done else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "skipped": self.skipped,
            "failed": self.failed,
            "users": self.users,
            "seconds": round(self.seconds, 2),
            "extract_seconds_per_review": round(self.seconds_per_review, 4),
            "errors": self.errors[:20],
        }


def load_updater(model: str | None = None, budget: int = 200, device: str = "auto") -> Any:
    """A :class:`llmrec.profiles.updater.ProfileUpdater` counting its budget with ``model``'s tokenizer (default:
    the bundled LLM) and matching aspects with the bundled MiniLM embedder on ``device``."""
    from transformers import AutoTokenizer

    from llmrec.adapters.representations import load_embedder
    from llmrec.models.defaults import resolve_model
    from llmrec.profiles.updater import ProfileUpdater

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
    return ProfileUpdater(tokenizer=tokenizer, embedder=load_embedder(None, device), budget=budget)


def pending(reviews: list[Review], store: SQLStore) -> list[Review]:
    """The reviews ``store`` has not applied yet, in the given order: what a build still has to extract (none: a
    caller need not start an engine)."""
    done = store.applied([r.review_id for r in reviews])
    return [r for r in reviews if r.review_id not in done]


def build_profiles(
    reviews: list[Review], store: SQLStore, extractor: ReviewExtractor, batch_size: int = 32
) -> BuildSummary:
    """Apply every review not applied yet, in the given order (each user's in time order), ``batch_size``
    extractions per engine call."""
    summary = BuildSummary(users=len({r.user for r in reviews}))
    started = time.perf_counter()
    todo = pending(reviews, store)
    summary.skipped = len(reviews) - len(todo)
    with progress_bar(len(todo), "building profiles", unit="review") as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            extracted_at = time.perf_counter()
            results = extractor.extract(chunk)
            summary.extract_seconds += time.perf_counter() - extracted_at
            for review, facts in zip(chunk, results, strict=True):
                if isinstance(facts, Exception):
                    store.record_failure(review.review_id, review.user, str(facts))
                    summary.failed += 1
                    summary.errors.append({"review_id": review.review_id, "error": str(facts)})
                else:
                    store.apply(review.user, facts, review_id=review.review_id)
                    summary.applied += 1
            bar.update(len(chunk))
    summary.seconds = time.perf_counter() - started
    return summary
