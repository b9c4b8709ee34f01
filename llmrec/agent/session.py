"""A chat turn: route the message to a tool (or let a tool-calling model pick), run it, then stream a short reply
grounded in what the tool returned.

The profile is the long-term memory (read by the tools, written by ``record_preference``); the conversation window
stays bounded (the last ``window`` messages). Recommendations are the tool's items only — catalog items with their
ids, sent as ``cards`` beside the text — so a title the LLM makes up in its reply is never presented as one. The
system message is fixed; the profile and the tool's result go to the model as data in the user's turn. A reply that
starts to repeat the system message is cut off there.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from llmrec.agent.router import ToolRouter
from llmrec.agent.tools import UserContext
from llmrec.catalog.catalog import Catalog
from llmrec.profiles.schema import clean_text, render_profile

SYSTEM = (
    "You are a recommendation assistant. Answer in two or three friendly sentences. When items are listed under "
    "'Found', talk only about those items, by their titles. Never invent other items."
)
MAX_MESSAGE = 2000
WITHHELD = " [withheld]"


@dataclass
class Turn:
    """What one turn produced: the tool that ran, the cards, the profile if it changed, and the reply."""

    tool: str
    cards: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    text: str = ""


def _shingles(text: str, size: int = 6) -> set[str]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {" ".join(words[i : i + size]) for i in range(max(0, len(words) - size + 1))}


class ChatSession:
    """Chat turns for one user over a chat model (:class:`llmrec.agent.chat_model.LlmrecChatModel`) and a
    :class:`UserContext`; ``router`` drives the tools (small models), else the model calls them itself."""

    def __init__(
        self, model: Any, context: UserContext, router: ToolRouter | None = None, window: int = 6
    ) -> None:
        self.model = model
        self.context = context
        self.router = router
        self.window = window
        self.catalog = Catalog.from_dataset(context.index.dataset)
        self._system = _shingles(SYSTEM)

    def _tool_result(self, message: str) -> tuple[str, dict[str, Any]]:
        if self.router is None:
            return "chat", {}
        route = self.router.route(message, self.catalog, self.context.last_items)
        tools = {
            "recommend": lambda: self.context.recommend(),
            "search": lambda: self.context.search_catalog(**route.args),
            "profile": self.context.read_profile,
            "remember": lambda: self.context.record_preference(**route.args),
            "explain": lambda: self.context.explain(**route.args),
        }
        return route.tool, tools[route.tool]() if route.tool in tools else {}

    def _prompt(
        self, history: list[dict[str, str]], message: str, tool: str, result: dict[str, Any]
    ) -> list[BaseMessage]:
        data = []
        profile = self.context.profile()
        if profile is not None and profile.facts:
            data.append(f"What we know of the user's taste (data):\n{render_profile(profile)}")
        if result.get("items"):
            found = "\n".join(f"- {c['title']} ({c['why']})" for c in result["items"])
            data.append(f"Found (catalog items):\n{found}")
        if result.get("recorded"):
            data.append(f"Saved to the user's profile: {', '.join(result['recorded'])}")
        if tool == "profile":
            data.append(f"The user's profile: {result.get('text') or 'nothing known yet'}")
        messages: list[BaseMessage] = [SystemMessage(SYSTEM)]
        for past in history[-self.window :]:
            text = clean_text(past.get("content", ""), MAX_MESSAGE)
            messages.append(AIMessage(text) if past.get("role") == "assistant" else HumanMessage(text))
        question = clean_text(message, MAX_MESSAGE)
        messages.append(HumanMessage("\n\n".join([*data, f"User: {question}"]) if data else question))
        return messages

    def respond(self, messages: list[dict[str, str]]) -> Iterator[dict[str, Any]]:
        """One turn over the conversation ``messages`` (OpenAI-style; the last is the user's): events ``route``,
        ``cards``, ``profile``, then ``text`` deltas, then ``done`` with the :class:`Turn`."""
        users = [m for m in messages if m.get("role") == "user"]
        message = str(users[-1].get("content", "")) if users else ""
        history = [m for m in messages[:-1] if m.get("role") in ("user", "assistant")]
        tool, result = self._tool_result(clean_text(message, MAX_MESSAGE))
        turn = Turn(tool, list(result.get("items") or []), result.get("profile") if tool == "remember" else None)
        yield {"type": "route", "tool": tool}
        if turn.cards:
            yield {"type": "cards", "items": turn.cards}
        if turn.profile is not None:
            yield {"type": "profile", "profile": turn.profile}
        for chunk in self.model.stream(self._prompt(history, message, tool, result)):
            delta = chunk.content if isinstance(chunk.content, str) else json.dumps(chunk.content)
            candidate = turn.text + delta
            if _shingles(candidate) & self._system:  # repeating the system message: stop here
                turn.text += WITHHELD
                yield {"type": "text", "delta": WITHHELD}
                break
            turn.text = candidate
            yield {"type": "text", "delta": delta}
        yield {"type": "done", "turn": turn}

    def reply(self, messages: list[dict[str, str]]) -> Turn:
        """A whole turn (:meth:`respond` without the stream)."""
        events = list(self.respond(messages))
        return events[-1]["turn"]
