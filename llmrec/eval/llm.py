"""Evaluating LLM recommenders on the c20 protocol: the very candidates (and prompts) the encoders are scored on.

Each valid or test example's 20 candidates are ranked by the LLM (:meth:`LLMRecommender.rank`: every label's or
title's log-probability as the complete answer; ties count against the target), giving HR@K, NDCG@K and MRR@K;
generative runs' served answers (:meth:`LLMRecommender.answer`, decoded under grounding) give ``valid_ratio``
(answers that are one of the example's candidates), ``in_history_ratio`` and ``hr@1_generated``; a scored run's
answer is its best-scored candidate, valid by construction, and says so (``answers``) instead of a ratio.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.catalog.grounding import grounding_report
from llmrec.errors import LlmrecError
from llmrec.inference.recommender import LLMRecommender
from llmrec.progress import progress_bar
from llmrec.ranking.metrics import ranking_metrics, target_ranks
from llmrec.runs import update_metrics

CHUNK = 32
SCORED = "scored: always a candidate"


def evaluate_llm(recommender: LLMRecommender, which: str = "test", limit: int = 0, min_len: int = 3) -> dict[str, Any]:
    """c20 metrics of ``recommender`` on the ``which`` examples of its dataset's leave-one-out split
    (the first ``limit`` users only, when ``limit`` > 0)."""
    if recommender.task.task != "rank":
        raise LlmrecError(
            f"ranking by candidate scores is for rank runs; the run's task is {recommender.task.task!r} "
            "(explain and query runs are scored by llmrec.eval.generated)"
        )
    started = time.perf_counter()
    examples, matrix = recommender.rank_split(which, limit, min_len)
    ranks = target_ranks(matrix, np.array([e.target_index for e in examples]))
    result: dict[str, Any] = {"protocol": "c20", "split": which, "examples": len(examples)}
    result.update(ranking_metrics(ranks, (1, 5, 10, 20)))
    if recommender.verbalizer:  # the best-scored candidate: valid by construction, so no ratio that looks earned
        result["answers"] = SCORED
    else:
        answers: list[int | None] = []
        with progress_bar(len(examples), f"answers {which}", unit="user") as bar:
            for start in range(0, len(examples), CHUNK):
                answers.extend(recommender.answer(examples[start : start + CHUNK]))
                bar.update(len(examples[start : start + CHUNK]))
        served = [[a if a is not None and a in e.candidates else None] for a, e in zip(answers, examples, strict=True)]
        report = grounding_report(served, [e.history for e in examples])
        result.update({k: v for k, v in report.items() if k != "answers"})
        result["answers"] = "generated under the candidates' grounding"
        result["hr@1_generated"] = float(np.mean([a == e.target for a, e in zip(answers, examples, strict=True)]))
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def evaluate_llm_run(
    run: Path | str, which: str = "test", engine: str = "hf", limit: int = 0, **engine_options: Any
) -> dict[str, Any]:
    """Evaluate an LLM run and record the figures in its ``metrics.json`` (under ``<protocol>_<which>``): ``rank``
    runs on c20 by their candidate scores, ``explain`` runs on c20 by reasoning generation, ``query`` runs on the
    full catalog through their retriever (:mod:`llmrec.eval.generated`)."""
    run = Path(run)
    recommender = LLMRecommender.from_run(run, engine=engine, **engine_options)
    try:
        bundle = recommender.bundle
        min_len = bundle.min_len if bundle is not None else 3
        if recommender.task.task in ("explain", "query"):
            result = _evaluate_generated(recommender, which, limit, min_len)
        else:
            result = evaluate_llm(recommender, which, limit, min_len)
    finally:
        recommender.close()
    result = {"run": str(run), "engine": engine, **result}
    if not limit:
        update_metrics(run, {f"{result['protocol']}_{which}": result})
    return result


def _evaluate_generated(recommender: LLMRecommender, which: str, limit: int, min_len: int) -> dict[str, Any]:
    from llmrec.catalog.retrievers import make_retriever
    from llmrec.eval.generated import evaluate_generated
    from llmrec.inference.reasoning import ReasoningConfig

    bundle, dataset = recommender.bundle, recommender.dataset
    retriever = None
    if recommender.task.task == "query" and bundle is not None:
        retriever = make_retriever(bundle.retriever, dataset, bundle.encoder, "cpu")
    reasoning = ReasoningConfig(marker=recommender.task.marker)
    fingerprint = bundle.facts.get("split_fingerprint") if bundle is not None else None
    result, _ = evaluate_generated(
        recommender.engine,
        dataset,
        recommender.task,
        which,
        recommender.lora,
        limit,
        min_len,
        retriever,
        reasoning,
        fingerprint,
        recommender.query_grounding,
    )
    return result
