"""Evaluating LLMs whose answer is generated after a rationale: the ``explain`` and ``query`` tasks of RL runs.

- ``explain`` (c20): each valid or test user's 20 protocol candidates are ranked by reasoning generation
  (:func:`llmrec.inference.reasoning.reason`: several sampled rationales, each answer grounded to the candidates,
  consistency pruning, a weighted vote), giving HR@K, NDCG@K and MRR@K on the very candidates the encoders and
  the other LLM runs are scored on, the share of paths kept by pruning, and ``valid_ratio`` (paths whose answer
  is a candidate: 1 when grounded).
- ``query`` (full catalog, Rec-R1): the LLM writes a search query from the user's history (greedy, a rationale
  then the query line, as the run's rollouts were decoded: one free line, or catalog titles), a frozen retriever
  searches the whole catalog with it, and the target's rank in the top ``depth`` gives HR@K, NDCG@K and MRR@K
  (``well_formed``: the share of completions the format reward accepts).

Both return the per-user 0-based ranks too (``depth`` for a target the retriever did not return within the
depth), for paired comparisons (:mod:`llmrec.ranking.intervals`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.adapters.task_config import TaskConfig
from llmrec.adapters.tasks import TaskExample, build_examples
from llmrec.catalog.catalog import Catalog
from llmrec.catalog.grounding import Grounding
from llmrec.data.dataset import Dataset
from llmrec.data.splits import leave_one_out_split
from llmrec.errors import LlmrecError
from llmrec.inference.answers import MARKER, parse_answer, structured_answers
from llmrec.inference.engine import Engine
from llmrec.inference.reasoning import ReasoningConfig, ReasoningTask, reason, reprune
from llmrec.progress import progress_bar
from llmrec.ranking.metrics import ranking_metrics

CHUNK = 16
DEPTH = 100  # the retrieved list a query is scored on: HR and NDCG up to @100


def eval_examples(
    dataset: Dataset, task: TaskConfig, which: str, limit: int = 0, min_len: int = 3, fingerprint: str | None = None
) -> list[Any]:
    """The ``which`` examples of ``task`` on ``dataset``'s leave-one-out split (the first ``limit`` users);
    ``fingerprint`` (a run's) must match the split's."""
    if which not in ("valid", "test"):
        raise LlmrecError(f"split must be valid or test, got {which!r}")
    split = leave_one_out_split(dataset, min_len=min_len)
    if fingerprint is not None and fingerprint != split.fingerprint():
        raise LlmrecError("the dataset changed since this run was trained (its split fingerprint differs)")
    examples = build_examples(dataset, split, which, task)
    return examples[:limit] if limit else examples


def reasoning_ranks(
    engine: Engine,
    dataset: Dataset,
    examples: list[TaskExample],
    lora: str | Path | None = None,
    config: ReasoningConfig | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Each example's target rank among its candidates under reasoning generation, and the paths' figures."""
    config = config or ReasoningConfig()
    return reasoning_ranks_by_rule(engine, dataset, examples, lora, config, (config.prune,))[config.prune]


def reasoning_ranks_by_rule(
    engine: Engine,
    dataset: Dataset,
    examples: list[TaskExample],
    lora: str | Path | None,
    config: ReasoningConfig,
    rules: tuple[str, ...],
) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """:func:`reasoning_ranks` under each pruning rule of ``rules``, from one sample of paths (``config``'s
    sampling; its ``prune`` is ignored): rows that differ only in pruning cost one generation and are paired."""
    catalog = Catalog.from_dataset(dataset)
    found: dict[str, dict[str, Any]] = {rule: {"ranks": [], "kept": 0, "fallbacks": 0} for rule in rules}
    valid = paths = 0
    with progress_bar(len(examples), "reasoning", unit="user") as bar:
        for start in range(0, len(examples), CHUNK):
            chunk = examples[start : start + CHUNK]
            tasks = [ReasoningTask(catalog, e.history, e.candidates, lora, e.counts or None) for e in chunk]
            sampled = reason(engine, tasks, replace(config, prune="none"))
            for example, task, result in zip(chunk, tasks, sampled, strict=True):
                paths += len(result.paths)
                valid += sum(p.item_id in example.candidates for p in result.paths)
                for rule, into in found.items():
                    ranked = reprune(task, result, rule, config.min_agreement)
                    into["ranks"].append([r.item_id for r in ranked.ranking].index(example.target))
                    into["kept"] += sum(p.kept for p in ranked.paths)
                    into["fallbacks"] += ranked.fallback
            bar.update(len(chunk))
    out = {}
    for rule, into in found.items():
        report = {
            "paths_per_user": config.paths,
            "prune": rule,
            "kept_ratio": into["kept"] / max(paths, 1),
            "valid_ratio": valid / max(paths, 1),
            "fallback_ratio": into["fallbacks"] / max(len(examples), 1),
        }
        out[rule] = (np.asarray(into["ranks"]), report)
    return out


def generate_queries(
    engine: Engine,
    examples: list[TaskExample],
    lora: str | Path | None = None,
    grounding: Grounding | None = None,
    titles: int = 1,
) -> tuple[list[str], list[bool]]:
    """Each example's search query, greedy, in the structure of the query rollouts (a rationale, the answer
    marker, then the query line, or ``titles`` titles under ``grounding``:
    :func:`llmrec.inference.answers.structured_answers`), and whether the completion is well-formed by the format
    reward's rule (a rationale of a few words and a non-empty query)."""
    queries, formed = [], []
    with progress_bar(len(examples), "queries", unit="user") as bar:
        for start in range(0, len(examples), CHUNK):
            chunk = examples[start : start + CHUNK]
            prompts = [e.prompt for e in chunk]
            for rationale, answer in structured_answers(engine, prompts, lora, grounding=grounding, titles=titles):
                formed.append(parse_answer(f"{rationale}\n{MARKER}\n{answer}") is not None)
                queries.append(answer)
            bar.update(len(chunk))
    return queries, formed


def query_ranks(retriever: Any, queries: list[str], targets: list[int], depth: int = DEPTH) -> np.ndarray:
    """Each target's 0-based rank in its query's retrieved list (``depth`` when not within the first ``depth``)."""
    found = retriever.search(queries, depth)
    return np.asarray([ranked.index(t) if t in ranked else depth for ranked, t in zip(found, targets, strict=True)])


def metrics_of(ranks: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    """HR, NDCG and MRR at each ``k`` of 0-based ranks."""
    return ranking_metrics(ranks, ks)


def evaluate_generated(
    engine: Engine,
    dataset: Dataset,
    task: TaskConfig,
    which: str = "valid",
    lora: str | Path | None = None,
    limit: int = 0,
    min_len: int = 3,
    retriever: Any = None,
    reasoning: ReasoningConfig | None = None,
    fingerprint: str | None = None,
    query_grounding: tuple[Grounding | None, int] = (None, 1),
) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of an ``explain`` (c20, reasoning) or ``query`` (full catalog, ``retriever``) task, and the
    per-user ranks; ``fingerprint`` is the evaluated run's split fingerprint; ``query_grounding`` the grounding
    and title count of a query line written as catalog titles."""
    started = time.perf_counter()
    examples = eval_examples(dataset, task, which, limit, min_len, fingerprint)
    if task.task == "explain":
        ranks, report = reasoning_ranks(engine, dataset, examples, lora, reasoning)
        result: dict[str, Any] = {"protocol": "c20", "split": which, "examples": len(examples)}
        result.update(metrics_of(ranks, (1, 5, 10, 20)))
    elif task.task == "query":
        if retriever is None:
            raise LlmrecError("a query task is scored through a retriever: pass one (llmrec.catalog.retrievers)")
        queries, formed = generate_queries(engine, examples, lora, *query_grounding)
        ranks = query_ranks(retriever, queries, [e.target for e in examples])
        result = {"protocol": "full", "split": which, "examples": len(examples), "retriever": retriever.name}
        result.update(metrics_of(ranks, (1, 10, 100)))
        report = {"well_formed": float(np.mean(formed)) if formed else 0.0}
    else:
        raise LlmrecError(f"task {task.task!r} is scored by ranking (llmrec.eval.llm), not by generation")
    result.update(report)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result, ranks
