"""An SFT bundle with a projector served by vLLM (merged checkpoint, hybrid prompts as prompt_embeds) gives the
scores the transformers engine gives with the adapter applied per request: label scores from the generate runner,
item scores (last hidden state x projected candidate vectors) from the pooling runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmrec.adapters.tasks import build_examples
from llmrec.errors import LlmrecError
from llmrec.inference.engine import Request, SamplingConfig

pytest.importorskip("vllm")
pytestmark = pytest.mark.requires_vllm


def test_a_bundle_scores_the_same_on_vllm_and_transformers(sft_run: Path, ml100k) -> None:
    from llmrec.data.splits import leave_one_out_split
    from llmrec.inference.recommender import LLMRecommender

    hf = LLMRecommender.from_run(sft_run, "hf", dtype="float32")
    try:
        examples = build_examples(ml100k, leave_one_out_split(ml100k), "test", hf.task)[:2]
        assert all(e.item_ids for e in examples)  # hybrid prompts: the projected vectors are part of the input
        theirs = hf.rank(examples)
    finally:
        hf.close()
    vllm = LLMRecommender.from_run(sft_run, "vllm", dtype="float32")
    try:
        assert vllm.adapter_merged and (sft_run / "merged" / "config.json").is_file()
        ours = vllm.rank(examples)
        answers = vllm.answer(examples, ours)
    finally:
        vllm.close()
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert all(a in e.candidates for a, e in zip(answers, examples, strict=True))


def test_an_item_scored_bundle_scores_the_same_on_vllm_and_transformers(
    tiny_recipe, sasrec_run: Path, tmp_path: Path, ml100k
) -> None:
    """The run is trained with a prior: served, each candidate's score is the LLM's plus the prior times the
    encoder's own score, on both engines."""
    from llmrec.data.splits import leave_one_out_split
    from llmrec.encoders.run import load_best
    from llmrec.inference.recommender import LLMRecommender
    from llmrec.training.sft import train_sft

    run = tmp_path / "item-run"
    task = {"item_text": "vector", "user_vector": True, "output": "item", "prior": 0.5}
    train_sft(tiny_recipe(task=task, curriculum={"kind": "none"}), run)
    hf = LLMRecommender.from_run(run, "hf", dtype="float32")
    try:
        assert hf.task.prior == 0.5
        examples = build_examples(ml100k, leave_one_out_split(ml100k), "test", hf.task, hf.user_states)[:3]
        theirs = hf.rank(examples)
        hf.prompter.prior = 0.0
        llm_alone = hf.rank(examples)
    finally:
        hf.close()
    items = load_best(sasrec_run).item_embeddings().detach().float().numpy()  # the encoder's own scores, by hand
    own = np.array([[np.dot(e.user_vectors[0], items[c]) for c in e.candidates] for e in examples])
    np.testing.assert_allclose(theirs, llm_alone + 0.5 * own, atol=1e-3, rtol=1e-4)
    vllm = LLMRecommender.from_run(run, "vllm", dtype="float32")
    try:
        assert vllm.adapter_merged and vllm.engine.runner == "pooling"
        ours = vllm.rank(examples)
        answers = vllm.answer(examples, ours)
        with pytest.raises(LlmrecError, match="runner='generate'"):  # a pooling engine does not generate
            vllm.engine.generate([Request(prompt="Hi")], SamplingConfig(max_new_tokens=2))
    finally:
        vllm.close()
    assert ours.shape == (3, len(examples[0].candidates)) and np.isfinite(ours).all()
    np.testing.assert_allclose(ours, theirs, atol=1e-3, rtol=1e-4)
    assert answers == [e.candidates[int(np.argmax(row))] for e, row in zip(examples, ours, strict=True)]


def test_a_text_only_bundle_is_served_merged_on_a_cpu(tiny_recipe, tmp_path: Path, ml100k) -> None:
    """Without a GPU, vLLM serves a text-only run from its merged checkpoint (its CPU LoRA path is several times
    slower), with the scores the transformers engine gives with the adapter applied per request."""
    from llmrec.data.splits import leave_one_out_split
    from llmrec.inference.recommender import LLMRecommender
    from llmrec.training.sft import train_sft

    run = tmp_path / "text-run"
    train_sft(tiny_recipe(representation="none"), run)
    hf = LLMRecommender.from_run(run, "hf", dtype="float32")
    try:
        examples = build_examples(ml100k, leave_one_out_split(ml100k), "test", hf.task)[:2]
        assert not any(e.item_ids for e in examples)
        theirs = hf.rank(examples)
    finally:
        hf.close()
    vllm = LLMRecommender.from_run(run, "vllm", dtype="float32")
    try:
        assert vllm.adapter_merged and vllm.lora is None and (run / "merged" / "config.json").is_file()
        ours = vllm.rank(examples)
    finally:
        vllm.close()
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
