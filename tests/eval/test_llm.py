"""LLM recommenders on the c20 protocol and through the command line: the session's two-step SFT run, served by
the hf engine, and the base LLM zero-shot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llmrec.errors import LlmrecError
from llmrec.eval.llm import SCORED, evaluate_llm, evaluate_llm_run
from llmrec.runs import read_metrics

USERS = 4


def test_c20_eval_scores_the_encoders_candidates(sft_run: Path, ml100k) -> None:
    from llmrec.adapters.tasks import build_examples
    from llmrec.data.splits import leave_one_out_split
    from llmrec.inference.recommender import LLMRecommender
    from llmrec.ranking.protocols import c20_candidates

    recommender = LLMRecommender.from_run(sft_run)
    try:
        result = evaluate_llm(recommender, "test", limit=USERS)
        examples = build_examples(ml100k, leave_one_out_split(ml100k), "test", recommender.task)[:USERS]
        first, second = recommender.rank(examples), recommender.rank(examples)
    finally:
        recommender.close()
    assert result["protocol"] == "c20" and result["examples"] == USERS
    assert {"hr@1", "ndcg@5", "ndcg@10"} <= set(result) and "valid_ratio" not in result
    assert result["answers"] == SCORED  # the best-scored candidate: valid by construction, no ratio claimed
    assert 0 <= result["hr@1"] <= result["ndcg@5"] <= result["ndcg@10"] <= 1
    # The very candidates the encoders are scored on, in the protocol's order; scoring twice ranks the same.
    stored = c20_candidates(leave_one_out_split(ml100k), "test", ml100k.num_items, ml100k.path / "splits")
    assert [e.candidates for e in examples] == stored[:USERS].tolist()
    assert np.array_equal(np.argsort(-first, axis=1), np.argsort(-second, axis=1))


def test_eval_run_records_full_evaluations_only(sft_run: Path) -> None:
    result = evaluate_llm_run(sft_run, "valid", limit=2)
    assert result["split"] == "valid" and result["examples"] == 2
    assert "c20_valid" not in read_metrics(sft_run)  # a partial evaluation is not the run's figure


def test_zero_shot_generative_answers_are_grounded(ml100k) -> None:
    from llmrec.adapters.task_config import TaskConfig
    from llmrec.inference.recommender import LLMRecommender

    recommender = LLMRecommender.zero_shot(TaskConfig(task="rank", output="generative", max_history=3))
    try:
        result = evaluate_llm(recommender, "test", limit=2)
    finally:
        recommender.close()
    assert result["valid_ratio"] == 1.0 and "hr@1_generated" in result and result["answers"] != SCORED


def test_zero_shot_refuses_item_scores() -> None:
    from llmrec.adapters.task_config import TaskConfig
    from llmrec.inference.recommender import LLMRecommender

    with pytest.raises(LlmrecError, match="no projector"):
        LLMRecommender.zero_shot(TaskConfig(task="rank", output="item", item_text="vector"))


def test_cli_recommend_and_eval(sft_run: Path, ml100k, llmrec_here) -> None:
    result = json.loads(
        llmrec_here("recommend", str(sft_run), "--user", "196", "-k", "5", "--json").stdout.splitlines()[-1]
    )
    rows = result["recommendations"]
    history = set(ml100k.sequences[ml100k.user_id("196")].tolist())
    assert len(rows) == 5 and len({r["item_id"] for r in rows}) == 5 and not {r["item_id"] for r in rows} & history
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert all(r["title"] == ml100k.titles[r["item_id"]] for r in rows)
    assert result["candidates_from"].startswith("encoder")
    out = llmrec_here("eval", str(sft_run), "--protocol", "c20", "--limit", "2", "--json")
    assert json.loads(out.stdout.splitlines()[-1])["examples"] == 2
    wrong = llmrec_here("eval", str(sft_run), "--protocol", "full", check=False)
    assert wrong.returncode != 0 and "use --protocol c20" in wrong.stderr


def test_serving_a_missing_or_unfinished_run_is_a_clear_error(tmp_path: Path, sasrec_run: Path) -> None:
    from llmrec.adapters.bundle import load_bundle

    with pytest.raises(LlmrecError, match="not a run directory"):
        load_bundle(tmp_path)
    with pytest.raises(LlmrecError, match="not an LLM-recommender run"):
        load_bundle(sasrec_run)
    with pytest.raises(LlmrecError, match="not an LLM-recommender run"):
        evaluate_llm_run(sasrec_run)
