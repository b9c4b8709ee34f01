"""The OpenAI-compatible engine: for when the model runs elsewhere (``vllm serve``, or any such server).

``messages`` go to ``/chat/completions``, plain prompts and ``prompt_embeds`` to ``/completions`` (prompt
embeddings need a vLLM server started with ``--enable-prompt-embeds``). Grounding is asked of the server as
vLLM's structured ``choice`` over the allowed titles (candidates, or the whole catalog: fine for catalogs of
a few thousand titles, slow to compile for much larger ones); the answer is resolved to an item afterwards, and
a server that ignores the constraint shows up as parsed (not ``constrained``) resolutions. A LoRA adapter is
addressed by the name the server serves it under (``vllm serve ... --lora-modules NAME=DIR``): the adapter
directory's name. Connection failures, 429 and 5xx answers are retried with exponential backoff, a bounded
number of times, then reported with what to check. Prompts are not fitted to the context here (the server holds
the tokenizer): the server rejects an over-long prompt, and that request alone fails (``RequestRejected``).
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from llmrec.errors import LlmrecError
from llmrec.inference.engine import (
    Completion,
    Request,
    RequestRejected,
    Result,
    SamplingConfig,
    ScoringUnavailable,
    Unsupported,
)
from llmrec.inference.prompting import resolve_completion

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


class OpenAIEngine:
    """An OpenAI-compatible HTTP server behind the Engine protocol.

    ``model``: the served model name (default: the server's first model). ``base_url``: default
    ``$OPENAI_BASE_URL`` or ``http://127.0.0.1:8000/v1``; ``api_key``: default ``$OPENAI_API_KEY``.
    ``retries``: attempts after the first on connection errors, 429 and 5xx (backoff 0.5 s, doubling, at most
    8 s). ``timeout``: seconds per HTTP request.
    """

    name = "openai"
    capabilities: frozenset[str] = frozenset({"stream"})

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        retries: int = 4,
        timeout: float = 300.0,
    ) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.retries = retries
        self.client = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)
        served = self.served_models()
        if model is None:
            if not served:
                raise LlmrecError(f"{self.base_url} serves no model")
            model = served[0]
        elif model not in served:
            raise LlmrecError(f"{self.base_url} does not serve {model!r}; it serves {', '.join(served)}")
        self.model = model

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()

    def served_models(self) -> list[str]:
        """The model names the server lists (base models and LoRA adapters)."""
        return [m["id"] for m in self._call("GET", "/models")["data"]]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        delay = 0.5
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.client.request(method, path, json=body)
            except httpx.TransportError as error:
                if last:
                    raise LlmrecError(
                        f"cannot reach the OpenAI-compatible server at {self.base_url} after {attempt + 1} attempts "
                        f"({type(error).__name__}: {error}); start it (e.g. `python -m "
                        "vllm.entrypoints.openai.api_server --model MODEL --port 8000`, what `vllm serve` runs) or "
                        "pass its address with --base-url"
                    ) from None
            else:
                if response.status_code < 400:
                    return response.json()
                if response.status_code != 429 and response.status_code < 500:
                    # A 4xx is about this request (a prompt over the context, an unknown parameter): the server
                    # itself works, so a batch records the row and goes on.
                    raise RequestRejected(
                        f"{self.base_url}{path} answered {response.status_code}: {response.text[:500]}"
                    )
                if last:
                    raise LlmrecError(f"{self.base_url}{path} answered {response.status_code}: {response.text[:500]}")
            time.sleep(delay)
            delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def _model_for(self, request: Request) -> str:
        if not request.lora:
            return self.model
        name = Path(request.lora).name
        if name not in self.served_models():
            raise LlmrecError(
                f"{self.base_url} does not serve the LoRA adapter {name!r}; start the server with "
                f"--enable-lora --lora-modules {name}={request.lora}"
            )
        return name

    def generate(
        self, requests: list[Request], params: SamplingConfig, on_text: Callable[[int, str], None] | None = None
    ) -> list[Result]:
        """Answer each request with one HTTP call (``n`` answers each); with ``on_text`` (``n`` 1) the server streams
        each answer (server-sent events) and every delta is handed on as it arrives."""
        if on_text is None:
            return [self._one(request, params) for request in requests]
        if params.n != 1:
            raise LlmrecError("streaming answers text as it is decoded, one answer per request: use n=1")
        out = []
        for index, request in enumerate(requests):
            out.append(self._streamed(request, params, lambda delta, index=index: on_text(index, delta)))
        return out

    def score(self, requests: list[Request], continuations: list[list[str]]) -> list[list[float]]:
        """Not available over the OpenAI API: it has no way to score a given answer exactly.

        (vLLM's server reports log-probs after its grammar mask, so forcing the answer with ``choice`` gives the
        constrained, not the model's, probabilities.) Rank with the vllm or hf engine for a full ranking.
        """
        raise ScoringUnavailable(
            "the openai engine cannot score candidates (no exact answer log-probabilities over the API); "
            "use the vllm or hf engine for a full ranking"
        )

    def last_hidden(self, requests: list[Request]) -> Any:
        """Not available over the OpenAI API, which returns no hidden states."""
        raise Unsupported("the openai engine returns no hidden states; serve item-scored runs on hf or vllm")

    def input_embedding(self) -> Any:
        """Not available: the model's weights are on the server."""
        raise Unsupported("the openai engine has no local embedding table; build prompt embeddings with hf or vllm")

    def _one(self, request: Request, params: SamplingConfig) -> Result:
        body = self._constrained_body(request, params)
        grounding = request.grounding
        chat = request.messages is not None
        answer = self._call("POST", "/chat/completions" if chat else "/completions", body)
        completions = []
        for choice in answer["choices"]:
            text = choice["message"]["content"] if chat else choice["text"]
            logprob, top = _logprobs(choice.get("logprobs"), chat, params.logprobs)
            completion = Completion(
                text=text or "",
                token_ids=list(choice.get("token_ids") or []),
                logprob=logprob,
                finish_reason=choice.get("finish_reason"),
                top_logprobs=top,
            )
            completions.append(resolve_completion(completion, grounding, None))
        usage = answer.get("usage") or {}
        return Result(
            completions,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    def chat_with_tools(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], params: SamplingConfig
    ) -> dict[str, Any]:
        """Native tool calling: the server's model answers ``messages`` with ``tools`` (OpenAI function schemas)
        available; returns its message (``content`` and ``tool_calls``)."""
        body = {
            "model": self.model, "messages": messages, "tools": tools, "temperature": params.temperature,
            "max_tokens": params.max_new_tokens, "seed": params.seed,
        }  # fmt: skip
        answer = self._call("POST", "/chat/completions", body)
        return answer["choices"][0]["message"]

    def _streamed(self, request: Request, params: SamplingConfig, on_delta: Callable[[str], None]) -> Result:
        """One request answered as a stream: deltas handed on as they arrive, then the whole answer resolved."""
        body = self._constrained_body(request, params) | {"stream": True, "stream_options": {"include_usage": True}}
        chat = request.messages is not None
        text, finish, usage = "", None, {}
        try:
            with self.client.stream("POST", "/chat/completions" if chat else "/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    rejected = response.status_code < 500 and response.status_code != 429
                    error = RequestRejected if rejected else LlmrecError
                    raise error(f"{self.base_url} answered {response.status_code}: {response.text[:500]}")
                for line in response.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[len("data: ") :])
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                        if delta:
                            text += delta
                            on_delta(delta)
                        finish = choice.get("finish_reason") or finish
        except httpx.TransportError as error:
            raise LlmrecError(f"lost the stream from {self.base_url} ({type(error).__name__}: {error})") from None
        completion = resolve_completion(Completion(text=text, token_ids=[], logprob=0.0, finish_reason=finish),
                                        request.grounding, None)  # fmt: skip
        return Result(
            [completion],
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        )

    def _constrained_body(self, request: Request, params: SamplingConfig) -> dict[str, Any]:
        """The request's body with its JSON schema or grounding as the server's structured output."""
        body = self._body(request, params)
        grounding = request.grounding
        if request.json_schema is not None:
            body["structured_outputs"] = {"json": request.json_schema, "disable_any_whitespace": True}
        if grounding is not None and grounding.constrain:
            body["structured_outputs"] = {"choice": grounding.titles}
            # The server's grammar accepts a title in any tokens: room for one per byte, so none is cut short.
            body["max_tokens"] = max(params.max_new_tokens, max(len(t.encode()) for t in grounding.titles) + 1)
        return body

    def _body(self, request: Request, params: SamplingConfig) -> dict[str, Any]:
        """The JSON body of a completion request (chat or text) without grounding."""
        body: dict[str, Any] = {
            "model": self._model_for(request),
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
            "max_tokens": params.max_new_tokens,
            "return_token_ids": True,
        }
        if params.stop:
            body["stop"] = params.stop
        if request.messages is not None:
            body.update(messages=request.messages, logprobs=True, top_logprobs=params.logprobs or 0)
        else:
            body["logprobs"] = params.logprobs or 0
            if request.prompt is not None:
                body["prompt"] = request.prompt
            else:
                import torch

                buffer = io.BytesIO()
                torch.save(request.prompt_embeds.detach().cpu(), buffer)
                body["prompt_embeds"] = base64.b64encode(buffer.getvalue()).decode()
        return body


def _logprobs(data: dict[str, Any] | None, chat: bool, top: int | None) -> tuple[float, list[dict] | None]:
    """Sequence log-probability and per-token top alternatives (keyed by token text) from either API."""
    if not data:
        return 0.0, None
    if chat:
        steps = data.get("content") or []
        total = sum(float(s["logprob"]) for s in steps)
        alternatives = [{a["token"]: float(a["logprob"]) for a in s.get("top_logprobs", [])} for s in steps]
    else:
        total = sum(float(x) for x in data.get("token_logprobs") or [] if x is not None)
        alternatives = [dict(step or {}) for step in data.get("top_logprobs") or []]
    return total, alternatives if top else None
