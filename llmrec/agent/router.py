"""The router that drives the tools for a small model: a constrained choice over the tools, made by MiniLM.

The bundled 135M LLM cannot call tools reliably, so a chat message is routed by its similarity to example requests
of each tool (the tool whose closest example is the most similar wins; below ``threshold``, plain chat), and the
tool's arguments come from the message itself: the text to search, the statement to remember, the catalog item to
explain (resolved to a real item, or the last one recommended). The choice is always one of :data:`TOOLS`, and every
item it names is a catalog item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmrec.adapters.representations import encode_texts

EXAMPLES: dict[str, list[str]] = {
    "recommend": [
        "recommend something for me", "what should I watch next", "suggest something I would like",
        "any recommendations for me?", "what should I buy next", "give me a few ideas", "pick something for me",
    ],
    "search": [
        "find movies about space", "search for horror films", "do you have anything with dragons",
        "look for a comedy from the nineties", "show me items like Toy Story", "I am looking for a warm blanket",
    ],
    "profile": [
        "what do you know about me", "show my profile", "what are my preferences", "what do you think I like",
    ],
    "remember": [
        "I love science fiction", "I don't like horror movies", "remember that I prefer comedies",
        "I hate long movies", "my favourite genre is drama", "please note that I dislike musicals",
    ],
    "explain": [
        "why did you recommend that", "why this one?", "explain the recommendation", "why would I like it",
    ],
    "chat": ["hello", "thanks a lot", "how are you", "who are you", "good morning"],
}  # fmt: skip
TOOLS = tuple(EXAMPLES)
_LEADING = re.compile(
    r"^(please\s+)?(can you\s+|could you\s+)?(find|search( for)?|look( for)?|show me|do you have|"
    r"i am looking for|i'm looking for)\s+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Route:
    """The tool chosen for a message, how sure the router is (cosine), and the tool's arguments."""

    tool: str
    score: float
    args: dict[str, Any] = field(default_factory=dict)


class ToolRouter:
    """Routes chat messages to :data:`TOOLS` (see the module docstring)."""

    def __init__(self, embedder: Any, threshold: float = 0.35) -> None:
        self.embedder = embedder
        self.threshold = threshold
        texts = [example for examples in EXAMPLES.values() for example in examples]
        self.owners = [tool for tool, examples in EXAMPLES.items() for _ in examples]
        vectors = encode_texts(embedder, texts).numpy()
        self.examples = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def route(self, message: str, catalog: Any = None, last_items: list[int] | None = None) -> Route:
        """The tool for ``message``; ``catalog`` resolves the item an explanation is about (else the first of
        ``last_items``, the items recommended last)."""
        text = message.strip()
        if not text:
            return Route("chat", 0.0)
        vector = encode_texts(self.embedder, [text]).numpy()[0]
        similarity = self.examples @ (vector / (np.linalg.norm(vector) or 1.0))
        best = int(np.argmax(similarity))
        tool, score = self.owners[best], float(similarity[best])
        if score < self.threshold:
            return Route("chat", score)
        if tool == "search":
            return Route(tool, score, {"query": _LEADING.sub("", text) or text})
        if tool == "remember":
            return Route(tool, score, {"statement": text})
        if tool == "explain":
            item = None
            if catalog is not None:
                found = catalog.resolve(text)
                item = found.item_id if found.resolved_by in ("exact", "normalised", "contained") else None
            if item is None and last_items:
                item = last_items[0]
            return Route(tool, score, {"item_id": item})
        return Route(tool, score)
