"""A chat turn: route the message to a tool (or let a tool-calling model pick), run it, then stream a short reply
grounded in what the tool returned.

The profile is the long-term memory (read by the tools, written by ``record_preference``); the conversation window
stays bounded (the last ``window`` messages). Recommendations are the tool's items only — catalog items with their
ids, sent as ``cards`` beside the text — so a title the LLM makes up in its reply is never presented as one. The
system message is fixed; the profile and the tool's result go to the model as data in the user's turn. A reply is
never shown repeating the system message (:class:`SystemGuard`).
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
# The start of the reply for each tool: a small model continues a sentence that is already about the found items
# far more often than it starts one.
OPENINGS = {
    "recommend": "Here are a few picks for you.",
    "search": "Here is what I found.",
    "profile": "Here is what I know about your taste:",
    "remember": "Noted, I will remember that.",
    "explain": "It fits you because",
}
MAX_MESSAGE = 2000
WITHHELD = " [withheld]"


@dataclass
class Turn:
    """What one turn produced: the tool that ran, the cards, the profile if it changed, and the reply."""

    tool: str
    cards: list[dict[str, Any]] = field(default_factory=list)
    profile: dict[str, Any] | None = None
    text: str = ""


SHINGLE = 5  # words in a row of the system message that a reply may not repeat
_WORD = re.compile(r"[a-z0-9']+")


class SystemGuard:
    """Stops a reply from repeating the system message: text is released only once it cannot be the start of a
    run of ``SHINGLE`` words of it, and a reply that completes such a run is cut off there."""

    def __init__(self, system: str) -> None:
        words = _WORD.findall(system.lower())
        self.runs = {tuple(words[i : i + n]) for n in range(1, SHINGLE + 1) for i in range(len(words) - n + 1)}
        self.next: dict[tuple[str, ...], set[str]] = {}  # run minus its last word -> the words that end it
        for run in self.runs:
            self.next.setdefault(run[:-1], set()).add(run[-1])

    def _could_start_a_run(self, tail: list[str], partial: bool) -> bool:
        ends = self.next.get(tuple(tail[:-1]), set())
        return tail[-1] in ends or (partial and any(end.startswith(tail[-1]) for end in ends))

    def release(self, text: str) -> tuple[int, bool]:
        """How many characters of ``text`` may be shown, and whether it repeats the system message."""
        spans = [(m.group(), m.start()) for m in _WORD.finditer(text.lower())]
        words = [w for w, _ in spans]
        for start in range(max(0, len(words) - SHINGLE + 1)):
            if tuple(words[start : start + SHINGLE]) in self.runs:
                return spans[start][1], True
        partial = bool(text) and (text[-1].isalnum() or text[-1] == "'")  # the last word may not be finished
        for held in range(min(SHINGLE - 1, len(words)), 0, -1):  # a tail that could grow into a run waits
            if self._could_start_a_run(words[-held:], partial):
                return spans[-held][1], False
        return len(text), False


class ChatSession:
    """Chat turns for one user over a chat model (:class:`llmrec.agent.chat_model.LlmrecChatModel`) and a
    :class:`UserContext`; ``router`` drives the tools (small models), else the model calls them itself."""

    def __init__(self, model: Any, context: UserContext, router: ToolRouter | None = None, window: int = 6) -> None:
        self.model = model
        self.context = context
        self.router = router
        self.window = window
        self.catalog = Catalog.from_dataset(context.index.dataset)
        self.guard = SystemGuard(SYSTEM)

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
        if tool in OPENINGS:
            messages.append(AIMessage(OPENINGS[tool]))  # continued by the model
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
        opening = OPENINGS.get(tool, "")
        if opening:
            yield {"type": "text", "delta": opening}
        written, shown, leaked = "", 0, False
        for chunk in self.model.stream(self._prompt(history, message, tool, result)):
            written += chunk.content if isinstance(chunk.content, str) else json.dumps(chunk.content)
            upto, leaked = self.guard.release(written)
            if upto > shown:
                yield {"type": "text", "delta": written[shown:upto]}
                shown = upto
            if leaked:  # the reply started to repeat the system message: it ends here
                break
        tail = WITHHELD if leaked else written[shown:]
        if tail:
            yield {"type": "text", "delta": tail}
        turn.text = opening + written[:shown] + tail
        yield {"type": "done", "turn": turn}

    def reply(self, messages: list[dict[str, str]]) -> Turn:
        """A whole turn (:meth:`respond` without the stream)."""
        events = list(self.respond(messages))
        return events[-1]["turn"]
