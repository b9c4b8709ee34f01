"""Iteration-level batching on the bundled model: rows that join a running batch answer as if alone, streams
respect stop strings, and a queue over the hf engine starts a newcomer while other answers are still decoding."""

from __future__ import annotations

import threading
import time

import pytest

from llmrec.catalog.grounding import Grounding
from llmrec.errors import LlmrecError
from llmrec.inference.continuous import DecodingBatch, StreamClosed, accepts
from llmrec.inference.engine import PromptTooLong, Request, SamplingConfig
from llmrec.inference.streaming import BatchedEngine

PROMPTS = [
    "Recommend a funny movie.",
    "What is a good science fiction film from the 1990s? Explain briefly why.",
    "Hi",
    "Name three thrillers.",
]


def chat(text: str) -> Request:
    return Request(messages=[{"role": "user", "content": text}])


@pytest.fixture(scope="module")
def fp32_engine():
    """The bundled model in float32, where padding changes no greedy token (bf16 rounding can flip near-ties)."""
    from llmrec.inference.hf import HFEngine

    engine = HFEngine(dtype="float32")
    yield engine
    engine.close()


class Collected:
    """Each row's streamed text and its end (result or error)."""

    def __init__(self, rows: int) -> None:
        self.text = [""] * rows
        self.ends: dict[int, tuple] = {}

    def sinks(self, rows: range) -> list:
        return [lambda delta, i=i: self.text.__setitem__(i, self.text[i] + delta) for i in rows]

    def dones(self, rows: range) -> list:
        return [lambda result, error, i=i: self.ends.__setitem__(i, (result, error)) for i in rows]


def test_rows_that_join_a_running_batch_answer_as_if_alone(fp32_engine) -> None:
    params = SamplingConfig(max_new_tokens=40)
    alone = [fp32_engine.generate([chat(p)], params)[0] for p in PROMPTS]
    batch, seen = DecodingBatch(fp32_engine), Collected(4)
    batch.add([chat(p) for p in PROMPTS[:2]], params, seen.sinks(range(2)), seen.dones(range(2)))
    for _ in range(5):
        batch.step()
    batch.add([chat(PROMPTS[2])], params, seen.sinks(range(2, 3)), seen.dones(range(2, 3)))
    for _ in range(7):
        batch.step()
    assert batch.active == 3  # the first rows are mid-answer when the last one joins
    batch.add([chat(PROMPTS[3])], params, seen.sinks(range(3, 4)), seen.dones(range(3, 4)))
    while batch.active:
        batch.step()
    for index, expected in enumerate(alone):
        result, error = seen.ends[index]
        assert error is None
        got, want = result.completions[0], expected.completions[0]
        assert got.token_ids == want.token_ids
        assert got.text == want.text == seen.text[index]
        assert got.logprob == pytest.approx(want.logprob, abs=1e-3)
        assert got.finish_reason == want.finish_reason
        assert result.prompt_tokens == expected.prompt_tokens
    assert batch.cache is None and batch.mask.numel() == 0  # every row left the batch


def test_stop_strings_end_rows_and_never_reach_the_stream(fp32_engine) -> None:
    params = SamplingConfig(max_new_tokens=48, stop=["3."])
    request = chat("List five comedies as a numbered list.")
    expected = fp32_engine.generate([request], params)[0].completions[0]
    assert expected.finish_reason == "stop"  # the prompt does reach the stop string
    batch, seen = DecodingBatch(fp32_engine), Collected(1)
    batch.add([request], params, seen.sinks(range(1)), seen.dones(range(1)))
    while batch.active:
        batch.step()
    got = seen.ends[0][0].completions[0]
    assert got.text == expected.text == seen.text[0]
    assert "3." not in seen.text[0] and got.token_ids == expected.token_ids


def test_a_sampled_row_does_not_depend_on_its_batch(fp32_engine) -> None:
    params = SamplingConfig(max_new_tokens=24, temperature=0.9, top_p=0.9, seed=11)
    texts = []
    for company in ([], PROMPTS[:3]):
        batch, seen = DecodingBatch(fp32_engine), Collected(1 + len(company))
        rows = range(1 + len(company))
        batch.add([chat(PROMPTS[3]), *map(chat, company)], params, seen.sinks(rows), seen.dones(rows))
        while batch.active:
            batch.step()
        texts.append(seen.ends[0][0].completions[0].text)
    assert texts[0] == texts[1] and texts[0]


def test_only_plain_requests_are_accepted(catalog) -> None:
    params = SamplingConfig()
    assert accepts(chat("hi"), params) and accepts(Request(prompt="hi"), params)
    assert accepts(Request(prompt="x", grounding=Grounding(catalog, constrain=False)), params)
    assert not accepts(Request(prompt="x", grounding=Grounding(catalog)), params)
    assert not accepts(Request(prompt="x", json_schema={"type": "object"}), params)
    assert not accepts(chat("hi"), SamplingConfig(n=2, temperature=1.0))
    assert not accepts(chat("hi"), SamplingConfig(logprobs=2))


def test_a_queue_over_the_hf_engine_starts_newcomers_mid_batch(fp32_engine, catalog) -> None:
    queued = BatchedEngine(fp32_engine, max_batch=4, max_queue=8)
    started: dict[str, float] = {}
    finished: dict[str, float] = {}

    def talk(name: str, request: Request, tokens: int) -> None:
        for _ in queued.stream(request, SamplingConfig(max_new_tokens=tokens)):
            started.setdefault(name, time.monotonic())
        finished[name] = time.monotonic()

    long = [
        threading.Thread(target=talk, args=(f"long{i}", Request(prompt="Once upon a time, in a cinema,"), 160))
        for i in range(3)
    ]
    for thread in long:
        thread.start()
    deadline = time.monotonic() + 60
    while len(started) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(started) == 3
    talk("late", chat("Hi"), 8)
    # Work of other kinds runs between the batch's steps: a grounded answer and a score.
    grounded = queued.generate([Request(prompt="A movie: ", grounding=Grounding(catalog))], SamplingConfig())
    scores = queued.score([Request(prompt="A movie: ")], [["Heat", "Alien"]])
    in_flight = sum(name not in finished for name in ("long0", "long1", "long2"))
    for thread in long:
        thread.join(timeout=120)
    assert in_flight > 0, "the newcomer waited for the whole batch"
    assert finished["late"] < max(finished[f"long{i}"] for i in range(3))
    assert grounded[0].completions[0].item_id is not None and len(scores[0]) == 2
    assert queued.waiting == 0


def test_a_rejected_newcomer_fails_alone() -> None:
    from llmrec.inference.hf import HFEngine

    queued = BatchedEngine(HFEngine(max_model_len=64, overflow="reject"), max_batch=4)
    result: list = []
    runner = threading.Thread(
        target=lambda: result.extend(
            queued.generate([Request(prompt="A short one.")], SamplingConfig(max_new_tokens=24))
        )
    )
    runner.start()
    with pytest.raises(PromptTooLong):
        queued.generate([Request(prompt="word " * 200)], SamplingConfig(max_new_tokens=8))
    runner.join(timeout=60)
    assert len(result) == 1 and result[0].completions[0].token_ids
    with pytest.raises(LlmrecError, match="at least 1"):
        BatchedEngine(queued.engine, max_batch=0)
    queued.close()


def test_a_failing_reader_ends_its_row_alone(fp32_engine) -> None:
    params = SamplingConfig(max_new_tokens=24)
    alone = fp32_engine.generate([chat(PROMPTS[1])], params)[0].completions[0].text
    batch, seen = DecodingBatch(fp32_engine), Collected(2)

    def broken(delta: str) -> None:
        raise StreamClosed("the reader left")

    batch.add([chat(PROMPTS[0]), chat(PROMPTS[1])], params, [broken, seen.sinks(range(2))[1]], seen.dones(range(2)))
    while batch.active:
        batch.step()
    assert seen.ends[0][0] is None and isinstance(seen.ends[0][1], StreamClosed)
    result, error = seen.ends[1]
    assert error is None and result.completions[0].text == alone == seen.text[1]


def test_the_queue_stops_a_closed_stream_and_lets_other_work_pass_a_full_batch(fp32_engine) -> None:
    queued = BatchedEngine(fp32_engine, max_batch=1, max_queue=8)
    assert queued.generate([], SamplingConfig()) == []
    stream = queued.stream(Request(prompt="Once upon a time, in a cinema,"), SamplingConfig(max_new_tokens=1000))
    next(stream)
    waiter = threading.Thread(target=queued.generate, args=([chat("Hi")], SamplingConfig(max_new_tokens=4)))
    waiter.start()  # a plain call that waits: the batch of one is full
    scores = queued.score([Request(prompt="A movie: ")], [["Heat", "Alien"]])  # other work is not held up
    assert len(scores[0]) == 2 and waiter.is_alive()
    closed = time.monotonic()
    stream.close()  # the reader leaves: its row stops at its next token, and the waiting call runs
    waiter.join(timeout=120)
    assert not waiter.is_alive() and time.monotonic() - closed < 10  # 1000 tokens would take far longer
    deadline = time.monotonic() + 10
    while queued.waiting and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queued.waiting == 0


def test_sampled_copies_of_one_prompt_differ(fp32_engine) -> None:
    params = SamplingConfig(max_new_tokens=24, temperature=1.0, seed=3)
    queued = BatchedEngine(fp32_engine, max_batch=4)
    texts = [r.completions[0].text for r in queued.generate([chat(PROMPTS[0])] * 3, params)]
    assert len(set(texts)) == 3
    again = [r.completions[0].text for r in queued.generate([chat(PROMPTS[0])] * 3, params)]
    assert again == texts  # the seed still fixes them
