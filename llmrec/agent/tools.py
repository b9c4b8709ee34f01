"""The agent's tools, as langchain-core tools over one user's context: search the catalog, recommend, read the
profile, record a stated preference, explain a recommendation.

Every tool returns plain data: ``items`` (catalog items with their id, title, score and why) for the ones that
name items, ``profile`` for the ones that read or change it. Items only ever come from the catalog index, so
whatever the LLM writes around them, a recommendation is a real item. A preference goes through the profile
updater into the store (a new version, within the budget), for the context's own user only: nothing a message says
can reach another user's profile.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from llmrec.agent.retriever import CatalogIndex, Hit
from llmrec.profiles.schema import Fact, Profile, render_profile

LIKE = re.compile(
    r"\b(?:i|we)\s+(?:really\s+|also\s+|do\s+)?(?:like|love|enjoy|prefer|adore)\s+(?P<what>.+)"
    r"|\bmy\s+favou?rite\s+(?:\w+\s+)?(?:is|are)\s+(?P<favourite>.+)",
    re.IGNORECASE,
)
DISLIKE = re.compile(
    r"\b(?:i|we)\s+(?:really\s+)?(?:don'?t|do not|never|can'?t|cannot)\s+(?:like|enjoy|stand|watch|want)"
    r"\s+(?P<what>.+)|\b(?:i|we)\s+(?:really\s+)?(?:hate|dislike|avoid|detest)\s+(?P<other>.+)",
    re.IGNORECASE,
)


def stated_facts(statement: str, review_id: str) -> list[Fact]:
    """The likes and dislikes a chat message states (``I love X and Y``, ``I don't like Z``), as facts.

    >>> [(f.kind, f.aspect) for f in stated_facts("I love sci-fi and old westerns. I don't like horror!", "m1")]
    [('like', 'sci-fi'), ('like', 'old westerns'), ('dislike', 'horror')]
    """
    facts: list[Fact] = []
    for sentence in re.split(r"[.!?;\n]", statement):
        negative = DISLIKE.search(sentence)
        match = negative or LIKE.search(sentence)
        if match is None:
            continue
        what = next(g for g in match.groups() if g)
        for part in re.split(r",|\band\b|\bor\b", what):
            fact = Fact.make("dislike" if negative else "like", part, sentence.strip(), review_id)
            if fact is not None:
                facts.append(fact)
    return facts


@dataclass
class UserContext:
    """What the tools of one chat act on: the catalog index, the profile store (``None``: no memory), the user,
    the extractor for preferences the patterns miss, and the items recommended last (for ``explain``; ``on_items``
    hears of each new list, so a server can remember it between requests)."""

    index: CatalogIndex
    store: Any
    user: str | None
    extractor: Any = None
    last_items: list[int] | None = None
    on_items: Callable[[str | None, list[int]], None] | None = None

    def profile(self) -> Profile | None:
        if self.store is None or self.user is None:
            return None
        return self.store.get(self.user)

    def why(self, hit: Hit, source: str, profile: Profile | None) -> str:
        """A short reason for an item: a liked aspect its text mentions, else where the item came from."""
        text = self.index.texts[hit.item_id].lower()
        liked = [f.aspect for f in (profile.of_kind("like") if profile else []) if f.aspect in text]
        if liked:
            return f"matches what you like: {', '.join(liked[:3])}"
        if source.startswith("encoder"):
            return "people with your history chose it next"
        if source == "search":
            return "matches your search"
        return "popular with everyone" if source == "popularity" else "fits your profile"

    def cards(self, hits: list[Hit], source: str) -> list[dict[str, Any]]:
        profile = self.profile()
        self.last_items = [h.item_id for h in hits]
        if self.on_items is not None and hits:
            self.on_items(self.user, self.last_items)
        return [{**h.to_dict(), "why": self.why(h, source, profile)} for h in hits]

    # -- the tools' functions ----------------------------------------------------------------------------------

    def search_catalog(self, query: str, k: int = 5) -> dict[str, Any]:
        """Find catalog items matching a description."""
        return {"items": self.cards(self.index.search(query, k, self.user), "search"), "source": "search"}

    def recommend(self, k: int = 5) -> dict[str, Any]:
        """Recommend items for the user, from their history and profile."""
        profile = self.profile()
        hits, source = self.index.recommend(self.user, k, profile=render_profile(profile))
        return {"items": self.cards(hits, source), "source": source}

    def read_profile(self) -> dict[str, Any]:
        """Read what is known about the user's taste."""
        profile = self.profile()
        return {"profile": profile.to_dict() if profile else None, "text": render_profile(profile)}

    def record_preference(self, statement: str) -> dict[str, Any]:
        """Record a preference the user stated, in their profile."""
        if self.store is None or self.user is None:
            return {"recorded": [], "note": "no profile store or no user: nothing is remembered"}
        review_id = f"chat:{uuid.uuid4().hex[:12]}"  # each statement counts, as often as it is said
        facts = stated_facts(statement, review_id)
        if not facts and self.extractor is not None:
            from llmrec.profiles.reviews import Review

            found = self.extractor.extract([Review(review_id, self.user, 0, "", "", None, statement, 0)])[0]
            facts = found if isinstance(found, list) else []
        current = self.store.get(self.user)
        version = current.version if current is not None else 0
        profile = self.store.apply(self.user, facts, expected_version=version, reviews=0)
        return {"recorded": [f"{f.kind}: {f.aspect}" for f in facts], "profile": profile.to_dict()}

    def explain(self, item_id: int | None = None) -> dict[str, Any]:
        """Explain why an item was recommended to the user."""
        if item_id is None or not 1 <= int(item_id) <= self.index.dataset.num_items:
            return {"items": [], "note": "no item to explain: ask for recommendations first, or name the item"}
        hit = self.index.hit(int(item_id), 0.0)
        profile = self.profile()
        source = "encoder" if self.index.encoder is not None and self.index.history(self.user) else "profile"
        card = {**hit.to_dict(), "why": self.why(hit, source, profile)}
        return {"items": [card], "about": self.index.texts[hit.item_id]}


def make_tools(context: UserContext) -> list[BaseTool]:
    """The five tools over ``context``, for langchain agents and for native tool calling."""
    return [
        StructuredTool.from_function(context.search_catalog, name="search_catalog"),
        StructuredTool.from_function(context.recommend, name="recommend"),
        StructuredTool.from_function(context.read_profile, name="read_profile"),
        StructuredTool.from_function(context.record_preference, name="record_preference"),
        StructuredTool.from_function(context.explain, name="explain"),
    ]
