"""The OpenAI-compatible engine against a real `vllm serve` of the default model, started here on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest

from llmrec.catalog.grounding import Grounding
from llmrec.errors import LlmrecError
from llmrec.inference.engine import Request, SamplingConfig
from llmrec.inference.vllm_server import free_port

pytest.importorskip("vllm")
pytestmark = pytest.mark.requires_vllm

ASK = "I watched Toy Story, Aladdin and Star Wars. Recommend one movie. Answer with the title only."


@pytest.fixture(scope="module")
def server(lora_dir, start_vllm):
    """`vllm serve` with the default model and one LoRA adapter; yields its base URL, stops it afterwards."""
    with start_vllm("--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"{lora_dir.name}={lora_dir}") as url:
        yield url


@pytest.fixture(scope="module")
def engine(server):
    from llmrec.inference.openai import OpenAIEngine

    engine = OpenAIEngine(base_url=server)
    yield engine
    engine.close()


def test_chat_and_text_prompts_with_usage_and_logprobs(engine, hf_engine) -> None:
    messages = [{"role": "user", "content": "Name three fruits."}]
    params = SamplingConfig(max_new_tokens=12, logprobs=2)
    served, text = engine.generate([Request(messages=messages), Request(prompt="The capital of France is")], params)
    local = hf_engine.generate([Request(messages=messages)], params)[0]
    assert served.completions[0].text == local.completions[0].text
    assert served.completions[0].token_ids == local.completions[0].token_ids
    assert served.prompt_tokens == local.prompt_tokens
    assert served.completion_tokens == len(served.completions[0].token_ids)
    assert served.completions[0].logprob == pytest.approx(local.completions[0].logprob, abs=1.0)
    assert len(served.completions[0].top_logprobs[0]) == 2
    assert text.completions[0].text and text.usage["completion_tokens"] > 0


def test_grounded_answers_are_catalog_items(engine, catalog) -> None:
    candidates = [50, 100, 181, 258, 288]
    grounded = Request(
        messages=[{"role": "user", "content": ASK}], grounding=Grounding(catalog, candidates=candidates)
    )
    whole = Request(messages=[{"role": "user", "content": ASK}], grounding=Grounding(catalog))
    params = SamplingConfig(n=3, temperature=1.0, seed=2)
    by_candidates, by_catalog = engine.generate([grounded, whole], params)
    assert {c.item_id for c in by_candidates.completions} <= set(candidates)
    for completion in by_catalog.completions:
        assert completion.item_id is not None and completion.title == catalog.title(completion.item_id)
        assert completion.resolved_by == "constrained"
    # A budget shorter than any title, sampled hot (titles spelled in unusual tokens): still whole candidates.
    hot = engine.generate([grounded], SamplingConfig(n=8, temperature=2.0, seed=3, max_new_tokens=1))[0]
    assert all(c.item_id in candidates for c in hot.completions), [c.text for c in hot.completions]


def test_lora_adapters_are_addressed_by_name(engine, lora_dir, tmp_path) -> None:
    messages = [{"role": "user", "content": "Name three fruits."}]
    base, adapted = engine.generate(
        [Request(messages=messages), Request(messages=messages, lora=lora_dir)], SamplingConfig(max_new_tokens=12)
    )
    assert adapted.completions[0].text != base.completions[0].text
    with pytest.raises(LlmrecError, match="does not serve the LoRA adapter 'other'"):
        engine.generate([Request(messages=messages, lora=tmp_path / "other")], SamplingConfig())


def test_bad_endpoints_fail_clearly_after_bounded_retries(server) -> None:
    from llmrec.inference.openai import OpenAIEngine

    start = time.monotonic()
    with pytest.raises(LlmrecError, match=r"cannot reach .* after 3 attempts.*vllm serve"):
        OpenAIEngine(base_url=f"http://127.0.0.1:{free_port()}/v1", retries=2)
    assert time.monotonic() - start < 10  # backoff 0.5 s + 1 s, bounded
    with pytest.raises(LlmrecError, match="does not serve 'no-such-model'"):
        OpenAIEngine("no-such-model", base_url=server)


def test_rank_without_scoring_keeps_the_answer_and_says_why(engine, tmp_path) -> None:
    from llmrec.inference.batch import BatchConfig, run_batch

    source = tmp_path / "in.jsonl"
    source.write_text('{"id": 1, "history": [1, 95], "candidates": [50, 100, 181]}\n')
    config = BatchConfig("rank", source, tmp_path / "out.jsonl", dataset="ml-100k")
    run_batch(config, engine)
    row = json.loads(config.out.read_text())
    assert row["item_id"] in (50, 100, 181) and row["ranking"] is None
    assert "cannot score candidates" in row["warnings"][0]


def test_a_queue_of_several_workers_sends_calls_at_once(server) -> None:
    """Behind ``llmrec serve --engine openai`` the queue has several workers of one request each: concurrent
    streams go to the server together (every one has its first text before any has finished), where one worker
    would answer them one after another."""
    import threading

    from llmrec.inference.openai import OpenAIEngine
    from llmrec.inference.streaming import BatchedEngine

    queued = BatchedEngine(OpenAIEngine(base_url=server), max_batch=1, max_queue=8, workers=4)
    params = SamplingConfig(max_new_tokens=160)  # long enough that a late first text still beats the first end
    request = Request(messages=[{"role": "user", "content": "Count from one to one hundred in words."}])
    started = time.perf_counter()
    first: dict[int, float] = {}
    finished: dict[int, float] = {}

    def stream(n: int) -> None:
        for _ in queued.stream(request, params):
            first.setdefault(n, time.perf_counter() - started)
        finished[n] = time.perf_counter() - started

    threads = [threading.Thread(target=stream, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    queued.close()
    assert len(finished) == 4 and max(first.values()) < min(finished.values()), (first, finished)
