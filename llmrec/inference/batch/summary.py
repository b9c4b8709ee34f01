"""What a batch run did: rows, errors, tokens, speed, and how grounded its answers were."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class BatchSummary:
    """What a batch run did."""

    rows_written: int = 0
    rows_skipped: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    answers: int = 0  # grounded answers (item recommendations), and of those:
    valid: int = 0  # resolved to a catalog item
    duplicates: int = 0  # repeating an item of the same row
    in_history: int = 0  # an item the row's history holds

    def add(self, outputs: list[dict[str, Any]], errors: int) -> None:
        """Count a chunk's output rows and errors."""
        self.rows_written += len(outputs)
        self.errors += errors
        for row in outputs:
            self.prompt_tokens += row["usage"]["prompt_tokens"]
            self.completion_tokens += row["usage"]["completion_tokens"]
            if "title" not in row:  # not grounded
                continue
            titles = [i["title"] for i in row["items"]] if "items" in row else [row["title"]]
            valid = [t for t in titles if t is not None]
            self.answers += len(titles)
            self.valid += len(valid)
            self.duplicates += len(valid) - len(set(valid))
            self.in_history += int(row.get("in_history", False))

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of the run."""
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rows_written": self.rows_written,
            "rows_skipped": self.rows_skipped,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_second": round(self.tokens_per_second, 2),
            **(
                {
                    "valid_ratio": round(self.valid / self.answers, 4),
                    "duplicate_ratio": round(self.duplicates / self.valid, 4) if self.valid else 0.0,
                    "in_history_ratio": round(self.in_history / self.valid, 4) if self.valid else 0.0,
                }
                if self.answers
                else {}
            ),
        }
