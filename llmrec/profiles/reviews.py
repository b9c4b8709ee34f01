"""Reviews as the profile manager reads them: one interaction of a dataset (its item's title and attributes, the
rating, the review text), or one given as JSON (``llmrec profiles update``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmrec.data.dataset import Dataset
from llmrec.errors import LlmrecError

if TYPE_CHECKING:
    from llmrec.catalog.catalog import Catalog


@dataclass(frozen=True)
class Review:
    """One interaction to learn from: its stable ``review_id``, the user (raw id), the item (id, title and
    attributes text), the rating (or ``None``), the review text (may be empty) and its position in the user's
    history (``seen``: how many of the user's reviews came before, plus one)."""

    review_id: str
    user: str
    item_id: int
    title: str
    attributes: str
    rating: float | None
    text: str
    seen: int

    def to_dict(self) -> dict[str, Any]:
        """The review as plain data."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def dataset_reviews(dataset: Dataset) -> list[Review]:
    """Every interaction of a dataset as a :class:`Review`, users in id order, each user's in time order."""
    attributes = dataset.attribute_texts
    items = dataset.items
    titles = dict(zip(items["item_id"].astype(int), items["title"].astype(str), strict=True))
    raw_items = dict(zip(items["item_id"].astype(int), items["raw_id"].astype(str), strict=True))
    raw_users = dict(zip(dataset.users["user_id"].astype(int), dataset.users["raw_id"].astype(str), strict=True))
    frame = dataset.interactions
    ratings = frame["rating"].tolist() if "rating" in frame else [None] * len(frame)
    texts = frame["review"].fillna("").astype(str).tolist() if "review" in frame else [""] * len(frame)
    out: list[Review] = []
    position: dict[int, int] = {}
    rows = zip(frame["user_id"].tolist(), frame["item_id"].tolist(), ratings, texts, strict=True)
    for user, item, rating, text in rows:
        seen = position[user] = position.get(user, 0) + 1
        raw = raw_users[int(user)]
        value = None if rating is None or rating != rating else float(rating)
        review_id = f"{raw}:{seen}:{raw_items[int(item)]}"
        out.append(Review(review_id, raw, int(item), titles[int(item)], attributes[int(item)], value, text, seen))
    return out


def review_from_json(
    text: str, user: str, dataset: str | Dataset | None = None, catalog: Catalog | None = None
) -> Review:
    """A review given as JSON (``{"item": "Title" or "#id", "rating": 5, "text": "...", "id": "..."}``); with a
    dataset (a name, a directory or one already loaded) its item is looked up (by exact title, normalised title or
    ``#id``) for the item's attributes. A caller that answers many reviews (the server) passes its loaded dataset
    and its ``catalog``, so neither is read again per review."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise LlmrecError(f"--review is not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("item", ""), str):
        raise LlmrecError('--review must be a JSON object such as {"item": "Title", "rating": 5, "text": "..."}')
    rating = data.get("rating")
    if rating is not None and (isinstance(rating, bool) or not isinstance(rating, int | float)):
        raise LlmrecError(f"--review rating must be a number, got {rating!r}")
    title, item_id, attributes = str(data.get("item", "")), 0, ""
    if dataset is not None and title:
        from llmrec.catalog.catalog import Catalog
        from llmrec.data.builtin import load_dataset

        loaded = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
        catalog = catalog or Catalog.from_dataset(loaded)
        if title.startswith("#") and title[1:].isdigit() and int(title[1:]) in catalog:
            item_id = int(title[1:])
        else:
            found = catalog.resolve(title)
            if found.item_id is None or found.resolved_by not in ("exact", "normalised"):
                raise LlmrecError(f"{loaded.name} has no item titled {title!r}; give its exact title or #id")
            item_id = found.item_id
        title, attributes = catalog.title(item_id), loaded.attribute_texts[item_id]
    body = str(data.get("text", ""))
    digest = hashlib.sha256(f"{user}\n{title}\n{rating}\n{body}".encode()).hexdigest()[:16]
    value = None if rating is None else float(rating)
    return Review(str(data.get("id") or digest), str(user), item_id, title, attributes, value, body, 0)
