"""The Engine contract every LLM feature goes through.

A ``Request`` holds chat ``messages``, or a text ``prompt``, or ``prompt_embeds`` (``[L, H]``, the adapters'
hybrid prompts), plus optionally a ``Grounding`` (candidates or the whole catalog) and a LoRA adapter
directory. ``Engine.generate(requests, params)`` returns one ``Result`` per request: the ``n`` sampled
``Completion`` texts, each with its sequence log-probability (sum of the model's raw token log-probs) and the
catalog item it resolves to.

Beyond generation an engine may offer declared capabilities (:data:`CAPABILITIES`): ``score`` (exact
log-probabilities of given answers), ``last_hidden`` (the final hidden state at each prompt's end),
``input_embedding`` (its input-embedding table, to build ``prompt_embeds``) and ``stream`` (``generate`` hands
each request's new text to ``on_text(index, delta)`` as it is decoded; without it, each answer whole at the end).
Callers check with :func:`require` before the work starts, and an engine without one raises :class:`Unsupported`
when asked. Engines are built by name with :func:`llmrec.inference.registry.load_engine`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmrec.catalog.grounding import Grounding
from llmrec.errors import LlmrecError

if TYPE_CHECKING:
    import torch

CAPABILITIES = ("score", "last_hidden", "input_embedding", "stream")


@dataclass
class SamplingConfig:
    """How to sample. The defaults are greedy decoding of one answer.

    Sampling: ``n`` (answers per request), ``temperature`` (0 = greedy), ``top_p``, ``seed``.
    Length and stopping: ``max_new_tokens``, ``stop`` (strings that end an answer; not included in it).
    Output: ``logprobs`` (how many top alternatives to report per generated token; ``None`` = none; the
    sequence log-probability is always reported).
    """

    n: int = field(default=1, metadata={"help": "Answers sampled per request."})
    temperature: float = field(default=0.0, metadata={"help": "Softmax temperature; 0 decodes greedily."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=64, metadata={"help": "Most tokens generated per answer."})
    seed: int = field(default=0, metadata={"help": "Random seed of the sampling."})
    stop: list[str] | None = field(default=None, metadata={"help": "Strings that end an answer."})
    logprobs: int | None = field(default=None, metadata={"help": "Top alternatives reported per token."})

    def __post_init__(self) -> None:
        if self.n < 1:
            raise LlmrecError(f"n must be at least 1, got {self.n}")
        if self.temperature < 0:
            raise LlmrecError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise LlmrecError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise LlmrecError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.logprobs is not None and self.logprobs < 0:
            raise LlmrecError(f"logprobs must be >= 0, got {self.logprobs}")

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic argmax."""
        return self.temperature == 0.0


@dataclass
class Request:
    """One generation request: exactly one of ``messages``, ``prompt``, ``prompt_embeds``.

    ``prompt`` is used verbatim (no chat template); ``messages`` are rendered with the model's chat template
    (generation prompt added). ``prompt_embeds`` is a ``[L, H]`` float tensor in the model's input space. The
    answer may be constrained by ``grounding`` (a catalog item) or ``json_schema`` (JSON the schema accepts: every
    engine decodes under it, so the text parses unless it ran out of ``max_new_tokens``).
    """

    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    prompt_embeds: torch.Tensor | None = None
    grounding: Grounding | None = None
    lora: str | Path | None = None
    json_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.messages, self.prompt, self.prompt_embeds))
        if given != 1:
            raise LlmrecError("a request needs exactly one of messages, prompt or prompt_embeds")
        if self.json_schema is not None and self.grounding is not None:
            raise LlmrecError("a request is constrained by grounding or by a JSON schema, not both")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise LlmrecError("json_schema must be a JSON schema (a mapping)")
        if self.messages is not None and (
            not self.messages or not all(isinstance(m, dict) and "role" in m for m in self.messages)
        ):
            raise LlmrecError("messages must be a non-empty list of {'role': ..., 'content': ...} objects")


@dataclass
class Completion:
    """One sampled answer: text, token ids, sequence log-probability, and the catalog item it names."""

    text: str
    token_ids: list[int]
    logprob: float
    finish_reason: str | None = None
    item_id: int | None = None
    title: str | None = None
    resolved_by: str | None = None
    top_logprobs: list[dict[int | str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``top_logprobs`` keys become strings)."""
        out = asdict(self)
        if self.top_logprobs is not None:
            out["top_logprobs"] = [{str(k): v for k, v in step.items()} for step in self.top_logprobs]
        return out


@dataclass
class Result:
    """The answers to one request and its token usage."""

    completions: list[Completion]
    prompt_tokens: int
    completion_tokens: int = -1
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.completion_tokens < 0:  # engines that see the tokens count them; servers report usage
            self.completion_tokens = sum(len(c.token_ids) for c in self.completions)

    @property
    def usage(self) -> dict[str, int]:
        """``prompt_tokens`` and ``completion_tokens``, as OpenAI reports them."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


class Engine(Protocol):
    """What every engine offers: ``generate`` and ``close``; ``score``, ``last_hidden`` and ``input_embedding``
    where ``capabilities`` lists them (elsewhere they raise :class:`Unsupported`)."""

    name: str
    model: str
    capabilities: frozenset[str]

    def generate(
        self, requests: list[Request], params: SamplingConfig, on_text: Callable[[int, str], None] | None = None
    ) -> list[Result]:
        """Answer every request (in order); a bad request raises ``LlmrecError`` before any generation.
        ``on_text(index, delta)`` receives each request's answer text (``n`` 1) as it is decoded."""
        ...

    def score(self, requests: list[Request], continuations: list[list[str]]) -> list[list[float]]:
        """Log-probability of each continuation as the request's complete answer (its tokens, then the end token)."""
        ...

    def last_hidden(self, requests: list[Request]) -> torch.Tensor:
        """``[R, H]`` float32: each request's final-norm hidden state at its prompt's end."""
        ...

    def input_embedding(self) -> torch.nn.Module:
        """The model's input-embedding module (``prompt_embeds`` are built in its space)."""
        ...

    def close(self) -> None:
        """Free the engine's processes and memory."""
        ...


class Unsupported(LlmrecError):
    """The engine lacks a capability a caller asked for."""


class ScoringUnavailable(Unsupported):
    """The engine cannot compute exact answer log-probabilities (``score``); rankings fall back or are omitted."""


def require(engine: Engine, capability: str, purpose: str) -> None:
    """Raise :class:`Unsupported`, naming ``purpose``, unless ``engine`` declares ``capability``."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown engine capability {capability!r}")
    if capability not in engine.capabilities:
        has = ", ".join(sorted(engine.capabilities)) or "generation only"
        error = ScoringUnavailable if capability == "score" else Unsupported
        raise error(
            f"{purpose} needs an engine with {capability}; the {engine.name} engine offers {has} "
            "(the hf engine offers every capability)"
        )


class RequestRejected(LlmrecError):
    """The engine refused one request (not the engine as a whole): a batch reports that row and goes on."""


class PromptTooLong(RequestRejected):
    """A prompt does not fit the model's context with room for the answer (``overflow="reject"``)."""
