"""The HTTP app (FastAPI, served by uvicorn): OpenAI-compatible chat completions over the agent, recommendations,
profiles, a health check, and the web page at ``/``.

- ``POST /v1/chat/completions``: OpenAI's request and response (``stream: true`` gives server-sent events); the
  user travels in the request's ``user`` field; the cards and a changed profile ride along under ``llmrec``.
- ``POST /v1/recommend``: a user id or a history of items in, grounded top-k out (ids, titles, scores).
- ``GET /v1/profiles/{user}``, ``POST /v1/profiles/{user}/reviews``, ``GET /healthz``, ``GET /openapi.json``.

Writes (chat, reviews) need the API key when one is set (``Authorization: Bearer KEY``; 401 otherwise). Input is
validated (422 names the field), bodies are capped (413), a full engine queue or ``max_queue`` chat turns in
progress answer 429 with ``Retry-After``, a request that takes too long 504; an error after a stream has started
arrives as an ``error`` event in the stream. CORS is closed unless origins are given. Models load once, at start.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from llmrec.errors import LlmrecError
from llmrec.inference.streaming import Overloaded
from llmrec.serve.state import ServeConfig, ServerState, static_dir

MODEL_NAME = "llmrec"
logger = logging.getLogger(__name__)


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=20_000)


class ChatRequest(BaseModel):
    model: str = MODEL_NAME
    messages: list[ChatMessage] = Field(min_length=1, max_length=200)
    stream: bool = False
    user: str | None = Field(default=None, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0, le=2)


class RecommendRequest(BaseModel):
    user: str | None = Field(default=None, max_length=200)
    history: list[int | str] | None = Field(default=None, max_length=1000)
    k: int = Field(default=10, ge=1, le=100)


class ReviewRequest(BaseModel):
    item: str = Field(default="", max_length=500)
    rating: float | None = Field(default=None, ge=0, le=10)
    text: str = Field(default="", max_length=100_000)
    id: str | None = Field(default=None, max_length=200)


def shared(request: Request) -> ServerState:
    """The server's state, loaded at start."""
    return request.app.state.llmrec


State = Annotated[ServerState, Depends(shared)]


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, by its Content-Length or, for a chunked body, as soon
    as the bytes received pass the limit."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body over {self.limit} bytes"
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # the endpoint reading the body answers 413
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, counted, send)


def create_app(config: ServeConfig, state: ServerState | None = None) -> FastAPI:
    """The app over ``state`` (loaded from ``config`` at start when not given)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.llmrec = state or await run_in_threadpool(ServerState, config)
        try:
            yield
        finally:
            await run_in_threadpool(app.state.llmrec.close)

    app = FastAPI(title="llmrec", description=__doc__.split("\n\n")[0], lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=config.max_body)  # inside CORS: a 413 carries its headers too
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])  # fmt: skip

    @app.exception_handler(Overloaded)
    async def overloaded(request: Request, error: Overloaded) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=429, headers={"Retry-After": str(error.retry_after)})

    @app.exception_handler(LlmrecError)
    async def failed(request: Request, error: LlmrecError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    def authorised(request: Request) -> None:
        if config.api_key is None:
            return
        given = request.headers.get("authorization", "")
        if given != f"Bearer {config.api_key}" and request.headers.get("x-api-key") != config.api_key:
            raise HTTPException(401, "missing or wrong API key", headers={"WWW-Authenticate": "Bearer"})

    async def within_time(function: Any, *args: Any) -> Any:
        try:
            return await asyncio.wait_for(run_in_threadpool(function, *args), config.timeout)
        except TimeoutError:
            raise HTTPException(504, f"the request took over {config.timeout:g} s") from None

    @app.get("/healthz")
    async def healthz(state: State) -> dict[str, Any]:
        return {
            "status": "ok", "dataset": state.dataset.name, "engine": state.engine.name, "queue": state.engine.waiting,
            "profiles": state.store is not None, "encoder": state.index.encoder_run,
        }  # fmt: skip

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_NAME, "object": "model", "owned_by": "llmrec"}]}

    @app.post("/v1/recommend")
    async def recommend(body: RecommendRequest, state: State) -> dict[str, Any]:
        # Scoring (an encoder's forward pass, MiniLM on a profile) runs in a worker thread: on the event loop it
        # would hold up every other request, streams included, for its duration.
        return await within_time(_recommend, state, body)

    @app.get("/v1/profiles/{user}")
    async def profile(user: str, state: State) -> dict[str, Any]:
        if state.store is None:
            raise HTTPException(404, "this server keeps no profiles (start it with --db)")
        found = await run_in_threadpool(state.store.get, user)
        if found is None:
            raise HTTPException(404, f"no profile for user {user!r}")
        return found.to_dict()

    @app.post("/v1/profiles/{user}/reviews", dependencies=[Depends(authorised)])
    async def review(user: str, body: ReviewRequest, state: State) -> dict[str, Any]:
        if state.store is None:
            raise HTTPException(404, "this server keeps no profiles (start it with --db)")
        return await within_time(_apply_review, state, user, body)

    # A chat turn holds a ticket from its admission to its last event, so that the turns in progress never make
    # more engine calls than the queue takes: excess load is refused with 429 before a stream starts, not cut
    # off in the middle of one.
    turns = threading.BoundedSemaphore(config.max_queue)

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    async def chat(body: ChatRequest, state: State) -> Any:
        messages = [m.model_dump() for m in body.messages]
        if messages[-1]["role"] != "user":
            raise HTTPException(422, "the last message must be the user's")
        ticket = _Ticket(turns, config.max_queue)
        try:
            session = state.session(body.user)
            if body.max_tokens:
                capped = min(body.max_tokens, config.max_tokens)
                session.model = session.model.model_copy(update={"max_tokens": capped})
            events = session.respond(messages)
            if not body.stream:
                turn = (await within_time(ticket.run(lambda: list(events))))[-1]["turn"]
                return _completion(turn)
            # errors (429, 400) arrive before the stream starts; the stream keeps the ticket until its end
            first = await within_time(ticket.run(lambda: _until_text(events), keep=True))
            return StreamingResponse(
                _sse(first, events), media_type="text/event-stream", background=BackgroundTask(ticket.give_back)
            )
        except BaseException:
            ticket.abandon()
            raise

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(static_dir() / "index.html")

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    return app


class _Ticket:
    """One chat turn's place among the ``max_queue`` turns in progress, given back exactly once: by the thread
    that runs the turn's work when that work ends (a request that timed out does not wait for it), or, when the
    work opened a stream, at the stream's end."""

    def __init__(self, slots: threading.BoundedSemaphore, size: int) -> None:
        if not slots.acquire(blocking=False):
            raise Overloaded(f"{size} chat turns are in progress; retry shortly")
        self.slots = slots
        self.lock = threading.Lock()
        self.working = False  # a thread runs the turn's work
        self.abandoned = False
        self.returned = False

    def run(self, work: Callable[[], Any], keep: bool = False) -> Callable[[], Any]:
        """``work`` wrapped to give the ticket back when it ends, unless ``keep`` and it succeeded for a request
        that still waits. Work whose request gave up before a thread took it does not run."""

        def wrapped() -> Any:
            with self.lock:
                if self.abandoned:
                    return None
                self.working = True
            ok = False
            try:
                result = work()
                ok = True
                return result
            finally:
                with self.lock:
                    self.working = False
                    if not (ok and keep and not self.abandoned):  # else the stream takes the ticket over
                        self._give_back()

        return wrapped

    def abandon(self) -> None:
        """The request failed or stopped waiting: give the ticket back now, or let the running work do it."""
        with self.lock:
            self.abandoned = True
            if not self.working:
                self._give_back()

    def give_back(self) -> None:
        """At the end of the stream that took the ticket over."""
        with self.lock:
            self._give_back()

    def _give_back(self) -> None:
        if not self.returned:
            self.returned = True
            self.slots.release()


def _item_ids(state: ServerState, history: list[int | str]) -> list[int]:
    ids = []
    for position, value in enumerate(history):
        if isinstance(value, int):
            if not 1 <= value <= state.dataset.num_items:
                raise HTTPException(422, f"history[{position}]: no item with id {value}")
            ids.append(value)
            continue
        found = state.catalog.resolve(value)
        if found.item_id is None or found.resolved_by not in ("exact", "normalised"):
            raise HTTPException(422, f"history[{position}]: no item titled {value!r}")
        ids.append(found.item_id)
    return ids


def _recommend(state: ServerState, body: RecommendRequest) -> dict[str, Any]:
    history = None if body.history is None else _item_ids(state, body.history)
    profile = ""
    # The profile is read only where it can decide: without an encoder answer for this user.
    personal = state.index.encoder is not None and bool(history or state.index.history(body.user))
    if state.store is not None and body.user is not None and history is None and not personal:
        from llmrec.profiles.schema import render_profile

        profile = render_profile(state.store.get(body.user))
    hits, source = state.index.recommend(body.user, body.k, history, profile)
    return {"user": body.user, "source": source, "items": [h.to_dict() for h in hits]}


def _apply_review(state: ServerState, user: str, body: ReviewRequest) -> dict[str, Any]:
    from llmrec.profiles.reviews import review_from_json

    parsed = review_from_json(body.model_dump_json(), user, state.dataset if body.item else None, state.catalog)
    facts = state.extractor.extract([parsed])[0]
    if isinstance(facts, Exception):
        state.store.record_failure(parsed.review_id, user, str(facts))
        raise HTTPException(422, f"{facts}; recorded to retry")
    return state.store.apply(user, facts, review_id=parsed.review_id).to_dict()


def _until_text(events: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events up to the first text delta (or the end), pulled before the response starts."""
    pulled = []
    for event in events:
        pulled.append(event)
        if event["type"] in ("text", "done"):
            break
    return pulled


def _chunk(ident: str, delta: dict[str, Any], finish: str | None = None, extra: dict | None = None) -> str:
    body: dict[str, Any] = {
        "id": ident, "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL_NAME,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }  # fmt: skip
    if extra:
        body["llmrec"] = extra
    return f"data: {json.dumps(body)}\n\n"


def _sse(first: list[dict[str, Any]], rest: Iterator[dict[str, Any]]) -> Iterator[str]:
    ident = f"chatcmpl-{uuid.uuid4().hex}"
    yield _chunk(ident, {"role": "assistant", "content": ""})
    try:
        yield from _sse_events(ident, itertools.chain(first, rest))  # lazily: each event sent as it comes
    except Exception as error:  # noqa: BLE001 - the response has started: the client gets the error in the stream
        logger.exception("chat stream failed")
        kind = "overloaded" if isinstance(error, Overloaded) else "server_error"
        yield f"data: {json.dumps({'error': {'message': str(error), 'type': kind}})}\n\n"
    yield "data: [DONE]\n\n"


def _sse_events(ident: str, events: Iterator[dict[str, Any]]) -> Iterator[str]:
    for event in events:
        kind = event["type"]
        if kind == "route":
            yield _chunk(ident, {}, extra={"tool": event["tool"]})
        elif kind == "cards":
            yield _chunk(ident, {}, extra={"recommendations": event["items"]})
        elif kind == "profile":
            yield _chunk(ident, {}, extra={"profile": event["profile"]})
        elif kind == "text":
            yield _chunk(ident, {"content": event["delta"]})
        else:
            yield _chunk(ident, {}, finish="stop")


def _completion(turn: Any) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": MODEL_NAME,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": turn.text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "llmrec": {"tool": turn.tool, "recommendations": turn.cards, "profile": turn.profile},
    }  # fmt: skip
