"""llmrec's engines as a langchain-core chat model: ``LlmrecChatModel(engine=...)`` works wherever langchain takes
a ``BaseChatModel`` (``invoke``, ``stream``, chains), streaming token by token on engines that stream.

Native tool calling goes to the engine's model when it has it: ``bind_tools`` on the ``openai`` engine sends the
tools to the server (a bigger model behind ``vllm serve`` or any OpenAI-compatible API) and returns its tool calls.
The bundled 135M model cannot call tools reliably, so local engines refuse ``bind_tools``; the chat session drives
the tools for them with a router (:mod:`llmrec.agent.router`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from llmrec.errors import LlmrecError
from llmrec.inference.engine import Request, SamplingConfig
from llmrec.inference.streaming import stream_text

ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def to_chat(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """langchain messages as the engines' chat messages (``role``, ``content``)."""
    out = []
    for message in messages:
        role = ROLES.get(message.type)
        if role is None:
            raise LlmrecError(f"a {message.type!r} message has no role in a chat; use system, human, ai or tool")
        content = message.content if isinstance(message.content, str) else json.dumps(message.content)
        out.append({"role": role, "content": content})
    return out


class LlmrecChatModel(BaseChatModel):
    """A chat model over an llmrec engine (``hf``, ``vllm``, ``openai``, or a :class:`BatchedEngine` of one).

    ``max_tokens`` and ``temperature`` (0: greedy) set the sampling; ``seed`` makes sampled answers repeatable.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: Any
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    tools: list[dict[str, Any]] | None = None

    @property
    def _llm_type(self) -> str:
        return f"llmrec-{self.engine.name}"

    def _params(self, stop: list[str] | None) -> SamplingConfig:
        return SamplingConfig(max_new_tokens=self.max_tokens, temperature=self.temperature, seed=self.seed, stop=stop)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        tools = kwargs.get("tools") or self.tools
        if tools:
            return ChatResult(generations=[ChatGeneration(message=self._call_tools(messages, tools, stop))])
        result = self.engine.generate([Request(messages=to_chat(messages))], self._params(stop))[0]
        completion = result.completions[0]
        message = AIMessage(
            content=completion.text,
            response_metadata={"finish_reason": completion.finish_reason, "engine": self.engine.name},
            usage_metadata={
                "input_tokens": result.prompt_tokens,
                "output_tokens": result.completion_tokens,
                "total_tokens": result.prompt_tokens + result.completion_tokens,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if kwargs.get("tools") or self.tools:  # a tool call comes whole
            message = self._generate(messages, stop, **kwargs).generations[0].message
            calls = [
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(message.tool_calls)
            ]
            yield ChatGenerationChunk(message=AIMessageChunk(content=message.content, tool_call_chunks=calls))
            return
        request = Request(messages=to_chat(messages))
        streamed = False
        for delta in stream_text(self.engine, request, self._params(stop)):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
            if run_manager is not None:
                run_manager.on_llm_new_token(delta, chunk=chunk)
            streamed = True
            yield chunk
        if not streamed:  # the model ended at once: an empty reply, where langchain-core would raise on no chunks
            yield ChatGenerationChunk(message=AIMessageChunk(content=""))

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The model with ``tools`` for native tool calling (the ``openai`` engine's server decides and fills the
        calls); local engines have no tool calling to bind."""
        if not hasattr(self.engine, "chat_with_tools"):
            raise LlmrecError(
                f"the {self.engine.name} engine's model has no native tool calling; drive the tools with "
                "llmrec.agent.router (as ChatSession does), or serve a tool-calling model behind the openai engine"
            )
        converted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=converted, tool_choice=tool_choice, **kwargs)

    def _call_tools(
        self, messages: list[BaseMessage], tools: list[dict[str, Any]], stop: list[str] | None
    ) -> AIMessage:
        reply = self.engine.chat_with_tools(to_chat(messages), tools, self._params(stop))
        calls = [
            {"name": call["function"]["name"], "args": json.loads(call["function"].get("arguments") or "{}"),
             "id": call.get("id"), "type": "tool_call"}
            for call in reply.get("tool_calls") or []
        ]  # fmt: skip
        return AIMessage(content=reply.get("content") or "", tool_calls=calls)
