"""An SFT bundle with a projector served by vLLM (merged checkpoint, hybrid prompts as prompt_embeds) gives the
scores the transformers engine gives with the adapter applied per request."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmrec.training.tasks import build_examples


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
