"""The transformers engine on the bundled default model: generation, grounding, embeddings, LoRA, bad input."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from llmrec.catalog.grounding import Grounding, grounding_report
from llmrec.errors import LlmrecError
from llmrec.inference.engine import PromptTooLong, Request, SamplingConfig
from llmrec.inference.prompting import render_prompt

ASK = "I watched Toy Story, Aladdin and Star Wars. Recommend one movie. Answer with the title only."


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_greedy_generation_is_deterministic_and_batch_independent(hf_engine) -> None:
    prompts = ["What is the capital of France?", "Name three fruits.", "Explain recursion in one sentence."]
    params = SamplingConfig(max_new_tokens=16)
    together = hf_engine.generate([Request(messages=chat(p)) for p in prompts], params)
    alone = [hf_engine.generate([Request(messages=chat(p))], params)[0] for p in prompts]
    for a, b in zip(together, alone, strict=True):
        assert a.completions[0].token_ids == b.completions[0].token_ids
        assert a.completions[0].logprob == pytest.approx(b.completions[0].logprob, abs=0.5)  # bf16 padding noise
    assert "Paris" in together[0].completions[0].text
    first = together[0]
    assert first.prompt_tokens == len(render_prompt(hf_engine.tokenizer, Request(messages=chat(prompts[0]))))
    assert first.completion_tokens == len(first.completions[0].token_ids) > 0
    assert first.completions[0].logprob < 0


def test_catalog_grounding_always_yields_a_catalog_item(hf_engine, catalog) -> None:
    requests = [Request(messages=chat(ASK), grounding=Grounding(catalog))]
    results = hf_engine.generate(requests, SamplingConfig(n=6, temperature=1.2, seed=7, max_new_tokens=4))
    items = [c.item_id for c in results[0].completions]
    assert all(c.resolved_by == "constrained" for c in results[0].completions)
    assert all(catalog.title(c.item_id) == c.title == c.text for c in results[0].completions)
    assert grounding_report([items])["valid_ratio"] == 1.0
    assert len(set(items)) > 1  # sampling explores the catalog


def test_candidate_grounding_answers_one_of_the_candidates(hf_engine, catalog) -> None:
    candidates = [50, 100, 181, 258, 288]
    grounding = Grounding(catalog, candidates=candidates, history=[1, 95])
    result = hf_engine.generate(
        [Request(messages=chat(ASK), grounding=grounding)], SamplingConfig(n=4, temperature=1.0)
    )
    assert {c.item_id for c in result[0].completions} <= set(candidates)
    assert all(c.resolved_by == "constrained" for c in result[0].completions)


def test_unconstrained_grounding_falls_back_to_parsing(hf_engine, catalog) -> None:
    grounding = Grounding(catalog, constrain=False)
    result = hf_engine.generate([Request(messages=chat(ASK), grounding=grounding)], SamplingConfig(max_new_tokens=24))
    completion = result[0].completions[0]
    assert completion.resolved_by in (None, "exact", "normalised", "contained", "fuzzy")
    assert (completion.item_id is None) == (completion.resolved_by is None)


def test_prompt_embeds_give_the_same_answer_as_the_tokens(hf_engine) -> None:
    request = Request(messages=chat("Name three fruits."))
    ids = torch.tensor(render_prompt(hf_engine.tokenizer, request))
    embeds = hf_engine.hf_model.get_input_embeddings()(ids).detach()
    params = SamplingConfig(max_new_tokens=12)
    by_tokens = hf_engine.generate([request], params)[0].completions[0]
    by_embeds = hf_engine.generate([Request(prompt_embeds=embeds)], params)[0].completions[0]
    assert by_embeds.token_ids == by_tokens.token_ids
    with pytest.raises(LlmrecError, match=r"prompt_embeds must be \[L, 576\]"):
        hf_engine.generate([Request(prompt_embeds=torch.zeros(3, 7))], params)


def test_stop_strings_end_the_answer_and_its_tokens(hf_engine) -> None:
    requests = [Request(messages=chat("Count from 1 to 10, separated by commas.")), Request(messages=chat("Hi!"))]
    result = hf_engine.generate(requests, SamplingConfig(stop=["5"], max_new_tokens=40))
    completion = result[0].completions[0]
    assert "5" not in completion.text and "4" in completion.text
    assert completion.finish_reason == "stop"
    # The tokens end with the one that completes the stop string, as vLLM reports them.
    decode = hf_engine.tokenizer.decode
    assert "5" in decode(completion.token_ids) and "5" not in decode(completion.token_ids[:-1])
    assert result[0].completion_tokens == len(completion.token_ids)


def test_top_logprobs_are_reported_per_token(hf_engine) -> None:
    result = hf_engine.generate(
        [Request(prompt="The capital of France is")], SamplingConfig(max_new_tokens=3, logprobs=2)
    )
    completion = result[0].completions[0]
    assert len(completion.top_logprobs) == len(completion.token_ids)
    first = completion.top_logprobs[0]
    assert len(first) == 2 and max(first, key=first.get) == completion.token_ids[0]


def test_over_long_prompts_are_truncated_with_a_warning_or_rejected(hf_engine) -> None:
    from llmrec.inference.hf import HFEngine

    long = Request(prompt="word " * 200)
    with pytest.warns(UserWarning, match="truncated from the left"):
        hf_engine.context, saved = 64, hf_engine.context
        try:
            result = hf_engine.generate([long], SamplingConfig(max_new_tokens=8))
        finally:
            hf_engine.context = saved
    assert result[0].prompt_tokens == 56 and "truncated" in result[0].warnings[0]
    strict = HFEngine(max_model_len=64, overflow="reject")
    with pytest.raises(PromptTooLong, match="does not fit the context of 64 tokens"):
        strict.generate([long], SamplingConfig(max_new_tokens=8))


def test_lora_adapters_apply_per_request_only(hf_engine, lora_dir) -> None:
    params = SamplingConfig(max_new_tokens=12)
    base_before = hf_engine.generate([Request(messages=chat("Name three fruits."))], params)[0]
    mixed = hf_engine.generate(
        [Request(messages=chat("Name three fruits."), lora=lora_dir), Request(messages=chat("Name three fruits."))],
        params,
    )
    assert mixed[0].completions[0].token_ids != base_before.completions[0].token_ids
    assert mixed[1].completions[0].token_ids == base_before.completions[0].token_ids


def test_bad_models_and_adapters_fail_clearly(hf_engine, foreign_lora_dir, tmp_path) -> None:
    from llmrec.inference.hf import HFEngine

    with pytest.raises(LlmrecError, match="cannot load model"):
        HFEngine(str(tmp_path / "no-such-model"))
    with pytest.raises(LlmrecError, match="does not fit .* the adapter was trained on"):
        hf_engine.generate([Request(prompt="Hi", lora=foreign_lora_dir)], SamplingConfig(max_new_tokens=2))
    with pytest.raises(LlmrecError, match="not a PEFT LoRA adapter directory"):
        hf_engine.generate([Request(prompt="Hi", lora=tmp_path)], SamplingConfig(max_new_tokens=2))
    with pytest.raises(LlmrecError, match="exactly one of"):
        Request(prompt="a", messages=chat("b"))


def _full_forward_logprob(engine, prompt_ids: list[int], answer: list[int]) -> float:
    """The log-prob of ``answer`` after ``prompt_ids`` from one plain forward pass of the base model over both
    (adapters loaded by earlier tests switched off, as the engine does for a request without one)."""
    from peft import PeftModel

    model = engine.hf_model
    ids = torch.tensor([[*prompt_ids, *answer]])
    with torch.inference_mode(), model.disable_adapter() if isinstance(model, PeftModel) else nullcontext():
        logprobs = model(input_ids=ids).logits[0].float().log_softmax(-1)
    positions = torch.arange(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(answer))
    return float(logprobs[positions, torch.tensor(answer)].sum())


def test_scores_share_the_prompt_and_equal_a_full_forward_pass(hf_engine) -> None:
    # More answers than a batch (the prompt's cache is copied for each chunk), of different lengths.
    answers = ["A", "Toy Story (1995)", "Star Wars (1977)", "The Godfather", "B", "Fargo (1996)"] * 3
    request = Request(messages=chat(ASK))
    hf_engine.batch_size, batch_size = 4, hf_engine.batch_size
    try:
        scores = hf_engine.score([request, request], [answers, answers[:2]])
    finally:
        hf_engine.batch_size = batch_size
    prompt = render_prompt(hf_engine.tokenizer, request)
    eos = hf_engine.tokenizer.eos_token_id
    # bf16 rounds the cached prompt (computed at another batch shape) differently: measured up to 0.6% on an AMX CPU.
    close = {"abs": 1e-3} if hf_engine.dtype == "float32" else {"abs": 0.05, "rel": 0.02}
    for text, score in zip(answers, scores[0], strict=True):
        answer = [*hf_engine.tokenizer(text, add_special_tokens=False)["input_ids"], eos]
        assert score == pytest.approx(_full_forward_logprob(hf_engine, prompt, answer), **close)
    assert scores[1] == pytest.approx(scores[0][:2], **close)
    assert hf_engine.score([request], [[]]) == [[]]


def test_last_hidden_batches_prompts_of_different_lengths_as_if_alone(hf_engine) -> None:
    texts = ["Name a movie.", "I watched Toy Story, Aladdin and Star Wars. What should I watch next tonight?", "Hi"]
    requests = [Request(messages=chat(t)) for t in texts]
    together = hf_engine.last_hidden(requests)
    alone = torch.cat([hf_engine.last_hidden([r]) for r in requests])
    assert together.shape == (3, hf_engine.hf_model.config.hidden_size) and together.dtype == torch.float32
    if hf_engine.dtype == "float32":
        torch.testing.assert_close(together, alone, atol=1e-4, rtol=1e-4)
    else:  # bf16 rounds differently with the batch shape: measured up to 2.2% of a state's norm on an AMX CPU
        differ = torch.linalg.vector_norm(together - alone, dim=1) / torch.linalg.vector_norm(alone, dim=1)
        assert (differ < 0.05).all(), differ
    # the same prompt given as token ids or as their embeddings is the same input
    ids = render_prompt(hf_engine.tokenizer, requests[1])
    with torch.no_grad():
        embeds = hf_engine.hf_model.get_input_embeddings()(torch.tensor(ids))
    torch.testing.assert_close(hf_engine.last_hidden([Request(prompt_embeds=embeds)]), alone[1:2])
    assert not torch.allclose(together[0], together[1])  # distinct prompts, distinct states


def test_json_schema_answers_parse_beside_free_and_grounded_rows(hf_engine, catalog) -> None:
    import json

    schema = {
        "type": "object",
        "properties": {"fruits": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 2}},
        "required": ["fruits"],
        "additionalProperties": False,
    }
    ask = [{"role": "user", "content": "Name two fruits."}]
    requests = [
        Request(messages=ask, json_schema=schema),
        Request(messages=ask),
        Request(messages=[{"role": "user", "content": "Name a movie."}], grounding=Grounding(catalog)),
    ]
    results = hf_engine.generate(requests, SamplingConfig(n=3, temperature=1.0, seed=2, max_new_tokens=48))
    for completion in results[0].completions:
        data = json.loads(completion.text)
        assert set(data) == {"fruits"} and len(data["fruits"]) <= 2 and all(len(f) <= 12 for f in data["fruits"])
    assert all(c.item_id is not None for c in results[2].completions)
    with pytest.raises(LlmrecError, match="grounding or by a JSON schema, not both"):
        Request(messages=ask, json_schema=schema, grounding=Grounding(catalog))
