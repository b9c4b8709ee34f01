"""Streaming answers as they are decoded, and a queue that batches concurrent callers into one engine.

:class:`RowStreamer` is a transformers streamer over a whole batch: each generation step it decodes every row's
new token and hands the row's new text to ``on_text(index, delta)``. :class:`BatchedEngine` puts a queue in front
of an engine for servers: calls from many threads wait in the queue, and a worker thread answers the waiting
calls of each kind together, in one engine call; past ``max_queue`` waiting calls, a new one is refused at once
with :class:`Overloaded`. Over an engine with a running batch (``decoding_batch``: the hf engine, see
:mod:`llmrec.inference.continuous`), plain generation requests join and leave that batch between decoding steps,
so a chat stream that arrives while others decode starts after one step, not after their whole answers.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from transformers.generation.streamers import BaseStreamer

from llmrec.errors import LlmrecError
from llmrec.inference.continuous import StreamClosed, accepts
from llmrec.inference.engine import Request, Result, SamplingConfig

TextSink = Callable[[int, str], None]


class RowStreamer(BaseStreamer):
    """Decodes each row of a ``generate`` batch as tokens arrive and passes the new text to ``on_text(index,
    delta)``, where ``index`` is ``indices[row]``. A row ends at its end token; text that ends inside a multi-byte
    character waits for the next token."""

    def __init__(self, tokenizer: Any, indices: list[int], on_text: TextSink) -> None:
        self.tokenizer = tokenizer
        self.indices = indices
        self.on_text = on_text
        self.tokens: list[list[int]] = [[] for _ in indices]
        self.shown = [0] * len(indices)
        self.done = [False] * len(indices)
        self.prompt_seen = False
        self.stops = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate passes the prompt first
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()[: len(self.indices)]):
            if self.done[row]:
                continue
            if token in self.stops:
                self.done[row] = True
                continue
            self.tokens[row].append(int(token))
            text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
            if text.endswith("\ufffd"):
                continue
            if len(text) > self.shown[row]:
                try:
                    self.on_text(self.indices[row], text[self.shown[row] :])
                except StreamClosed:  # its reader left: the row decodes on with the batch, unseen
                    self.done[row] = True
                self.shown[row] = len(text)

    def end(self) -> None:
        """Nothing to flush: every row's text was handed on as it was decoded."""


def stream_text(engine: Any, request: Request, params: SamplingConfig) -> Iterator[str]:
    """One request's answer as text deltas while ``engine`` decodes it (in a thread of its own; an engine without
    the ``stream`` capability yields its answer whole). Errors reach the consumer. Closing the iterator early (a
    client that left) stops the request's decoding at its next token where the engine batches row by row."""
    deltas: queue.Queue[str | BaseException | None] = queue.Queue()
    closed = threading.Event()

    def sink(_: int, delta: str) -> None:
        if closed.is_set():
            raise StreamClosed("the stream's reader has gone")
        deltas.put(delta)

    def run() -> None:
        try:
            engine.generate([request], params, on_text=sink)
            deltas.put(None)
        except BaseException as error:  # noqa: BLE001 - handed to the consuming thread
            deltas.put(error)

    threading.Thread(target=run, name="llmrec-stream", daemon=True).start()
    try:
        while (item := deltas.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        closed.set()


class Overloaded(LlmrecError):
    """The queue in front of the engine is full: the caller should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(eq=False)  # a call is itself: queues find and remove it by identity
class _Call:
    kind: str
    requests: list[Request]
    params: SamplingConfig | None = None
    answers: list[list[str]] | None = None
    on_text: TextSink | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None
    left: int = 0  # rows still decoding in a running batch


class BatchedEngine:
    """``engine`` behind a queue (see the module docstring): thread-safe ``generate`` (with ``on_text``),
    ``score``, and ``stream`` (an iterator of one request's text deltas). Calls of the same kind and sampling that
    wait together run as one engine call of at most ``max_batch`` requests, on one of ``workers`` threads: one for
    a local model (a batch uses every core), several for an engine whose server batches by itself (``openai``
    over ``vllm serve``, with ``max_batch`` 1: each call goes out at once and the server schedules them
    together). Over an engine with ``decoding_batch`` (and one worker), plain generation runs as iteration-level
    batching of at most ``max_batch`` rows, and other calls run between its steps."""

    def __init__(self, engine: Any, max_batch: int = 16, max_queue: int = 32, workers: int = 1) -> None:
        self.engine = engine
        self.name = engine.name
        self.model = engine.model
        self.capabilities = frozenset({*engine.capabilities, "stream"})
        self.tokenizer = getattr(engine, "tokenizer", None)
        self.max_batch = max_batch
        self.max_queue = max_queue
        if min(max_batch, max_queue, workers) < 1:
            raise LlmrecError("max_batch, max_queue and workers must be at least 1")
        self._queue: queue.Queue[_Call | None] = queue.Queue()
        self._waiting = 0
        self._lock = threading.Lock()
        run = self._run_decoding if workers == 1 and hasattr(engine, "decoding_batch") else self._run
        self._workers = [threading.Thread(target=run, name=f"llmrec-engine-{n}", daemon=True) for n in range(workers)]
        for worker in self._workers:
            worker.start()

    @property
    def waiting(self) -> int:
        """Calls in the queue or running."""
        return self._waiting

    def _submit(self, call: _Call) -> Any:
        with self._lock:
            if self._waiting >= self.max_queue:
                raise Overloaded(f"the engine queue is full ({self.max_queue} calls waiting); retry shortly")
            self._waiting += 1
        self._queue.put(call)
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result

    def generate(
        self, requests: list[Request], params: SamplingConfig, on_text: TextSink | None = None
    ) -> list[Result]:
        """Answer ``requests`` (``on_text``: each request's text deltas, as in the engine's ``generate``)."""
        return self._submit(_Call("generate", requests, params, on_text=on_text))

    def score(self, requests: list[Request], continuations: list[list[str]]) -> list[list[float]]:
        """The engine's ``score``, queued like the rest."""
        return self._submit(_Call("score", requests, answers=continuations))

    def stream(self, request: Request, params: SamplingConfig) -> Iterator[str]:
        """One request's answer as text deltas, while the worker decodes it (batched with other callers)."""
        return stream_text(self, request, params)

    def last_hidden(self, requests: list[Request]) -> Any:
        return self._submit(_Call("last_hidden", requests))

    def input_embedding(self) -> Any:
        return self.engine.input_embedding()

    def close(self) -> None:
        """Stop the workers (after the calls already queued) and close the engine."""
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout=60)
        self.engine.close()

    def _take(self, first: _Call) -> list[_Call]:
        """``first`` and the calls waiting behind it that can join its engine call."""
        calls, held = [first], []
        size = len(first.requests)
        while size < self.max_batch:
            try:
                call = self._queue.get_nowait()
            except queue.Empty:
                break
            if call is not None and call.kind == first.kind and call.params == first.params:
                calls.append(call)
                size += len(call.requests)
            else:
                held.append(call)
        for call in held:
            self._queue.put(call)
        return calls

    def _run(self) -> None:
        while (first := self._queue.get()) is not None:
            self._complete(self._take(first))

    def _complete(self, calls: list[_Call]) -> None:
        """Answer ``calls`` in one engine call and hand each caller its part (or the error)."""
        try:
            self._answer(calls)
        except BaseException as error:  # noqa: BLE001 - each caller gets the error
            for call in calls:
                call.error = error
        for call in calls:
            self._settle(call)

    def _settle(self, call: _Call) -> None:
        """Wake the caller, once (a call that failed while joining may still have rows that end later)."""
        with self._lock:
            if call.done.is_set():
                return
            self._waiting -= 1
            call.done.set()

    def _run_decoding(self) -> None:
        """The worker over a running batch: between decoding steps, take the calls that arrived, join the plain
        generation ones to the batch while it has room, and answer the others (the batch pauses meanwhile)."""
        batch = self.engine.decoding_batch()
        if batch is None:  # a model whose requests cannot join a running batch
            self._run()
            return
        waiting: deque[_Call] = deque()
        open_ = True
        while open_ or waiting or batch.active:
            while open_:  # block only when there is nothing to decode or admit
                try:
                    call = self._queue.get(block=not (waiting or batch.active))
                except queue.Empty:
                    break
                if call is None:
                    open_ = False
                else:
                    waiting.append(call)
            self._admit(batch, waiting)
            try:
                batch.step()
            except BaseException as error:  # noqa: BLE001 - every row's caller gets the error
                batch.fail(error)

    def _admit(self, batch: Any, waiting: deque[_Call]) -> None:
        """Join waiting plain generation calls to ``batch`` in arrival order while it has room (once one does
        not fit, the later ones wait too); answer other calls at once, together with the waiting calls that can
        share their engine call."""

        def plain(call: _Call) -> bool:
            return call.kind == "generate" and all(accepts(r, call.params) for r in call.requests)

        full = False
        for call in list(waiting):
            if call not in waiting:  # answered together with an earlier call
                continue
            if not plain(call):
                waiting.remove(call)
                calls, size = [call], len(call.requests)
                for other in list(waiting):
                    if size >= self.max_batch:
                        break
                    if other.kind == call.kind and other.params == call.params and not plain(other):
                        waiting.remove(other)
                        calls.append(other)
                        size += len(other.requests)
                self._complete(calls)
            elif not full and not (batch.active and batch.active + len(call.requests) > self.max_batch):
                waiting.remove(call)
                self._join(batch, call)
            else:
                full = True

    def _join(self, batch: Any, call: _Call) -> None:
        """Prefill ``call``'s requests into the running batch; the call settles when its last row ends."""
        call.result = [None] * len(call.requests)
        call.left = len(call.requests)
        if not call.requests:
            self._settle(call)
            return

        def sink(index: int) -> Callable[[str], None] | None:
            on_text = call.on_text
            return None if on_text is None else lambda delta: on_text(index, delta)

        def row_done(index: int) -> Callable[[Result | None, BaseException | None], None]:
            def done(result: Result | None, error: BaseException | None) -> None:
                if error is not None:
                    call.error = error
                call.result[index] = result
                call.left -= 1
                if not call.left:
                    self._settle(call)

            return done

        rows = range(len(call.requests))
        try:
            batch.add(call.requests, call.params, [sink(i) for i in rows], [row_done(i) for i in rows])
        except BaseException as error:  # noqa: BLE001 - the caller gets it; none of its rows joined
            call.error = error
            self._settle(call)

    def _answer(self, calls: list[_Call]) -> None:
        requests = [r for call in calls for r in call.requests]
        offsets, total = [], 0
        for call in calls:
            offsets.append(total)
            total += len(call.requests)
        kind = calls[0].kind
        if kind == "generate":
            sinks = {}
            for call, offset in zip(calls, offsets, strict=True):
                if call.on_text is not None:
                    for i in range(len(call.requests)):
                        sinks[offset + i] = (call.on_text, i)

            def on_text(index: int, delta: str) -> None:
                if index in sinks:
                    sink, own = sinks[index]
                    sink(own, delta)

            streamed = bool(sinks) and "stream" in self.engine.capabilities
            results = self.engine.generate(requests, calls[0].params, on_text if streamed else None)
            if sinks and not streamed:  # an engine that cannot stream hands each answer on whole
                for index, result in enumerate(results):
                    on_text(index, result.completions[0].text)
        elif kind == "score":
            results = self.engine.score(requests, [a for call in calls for a in call.answers or []])
        else:
            results = self.engine.last_hidden(requests)
        for call, offset in zip(calls, offsets, strict=True):
            call.result = results[offset : offset + len(call.requests)]
