"""Reasoning generation: pruning rules on hand-made paths, and a real multi-path run on the default model."""

from __future__ import annotations

import pytest

from llmrec.errors import LlmrecError
from llmrec.inference.reasoning import (
    ReasoningConfig,
    ReasoningPath,
    ReasoningTask,
    last_mentioned,
    prune_paths,
    reason,
    reasoning_prompt,
    reprune,
)

CANDIDATES = {1: "Fargo", 2: "Heat", 3: "Scream"}


def path(rationale: str, item: int, weight: float = 0.5) -> ReasoningPath:
    return ReasoningPath(rationale, item, CANDIDATES[item], "constrained", logprob=-1.0, tokens=2, weight=weight)


def test_self_pruning_drops_answers_that_contradict_their_rationale() -> None:
    paths = [
        path("Heat is tense, but Fargo fits.", 1),
        path("They love thrillers like Heat.", 1),
        path("No titles here.", 3),
    ]
    assert prune_paths(paths, CANDIDATES, "self", 2) is False
    assert [(p.kept, p.pruned_by) for p in paths] == [(True, None), (False, "self"), (True, None)]


def test_majority_pruning_keeps_answers_enough_paths_agree_on() -> None:
    paths = [path("", 1), path("", 1), path("", 2), path("", 3)]
    prune_paths(paths, CANDIDATES, "majority", 2)
    assert [p.kept for p in paths] == [True, True, False, False]
    assert {p.pruned_by for p in paths if not p.kept} == {"majority"}
    spread = [path("", 1), path("", 2), path("", 3)]  # nobody agrees: nothing to prune against
    prune_paths(spread, CANDIDATES, "majority", 2)
    assert all(p.kept for p in spread)


def test_when_every_path_is_pruned_all_are_kept_and_flagged() -> None:
    paths = [path("Heat!", 1), path("Scream!", 2)]
    assert prune_paths(paths, CANDIDATES, "both", 2) is True
    assert all(p.kept for p in paths)


def test_last_mentioned_uses_normalised_titles() -> None:
    assert last_mentioned("I'd pick the usual suspects over heat", {7: "Usual Suspects, The", 2: "Heat"}) == 2
    assert last_mentioned("nothing relevant", CANDIDATES) is None


def test_config_rejects_bad_values() -> None:
    with pytest.raises(LlmrecError, match="prune must be one of"):
        ReasoningConfig(prune="sometimes")
    with pytest.raises(LlmrecError, match="paths must be at least 1"):
        ReasoningConfig(paths=0)


def test_reasoning_on_the_default_model_grounds_every_path(hf_engine, catalog) -> None:
    candidates = [100, 258, 288, 12, 121]
    tasks = [ReasoningTask(catalog, history=[1, 95, 50, 181], candidates=candidates)]
    config = ReasoningConfig(paths=3, max_reasoning_tokens=32, seed=1)
    (result,) = reason(hf_engine, tasks, config)
    assert len(result.paths) == 3
    assert all(p.item_id in candidates and p.resolved_by == "constrained" for p in result.paths)
    assert sorted(r.item_id for r in result.ranking) == sorted(candidates)
    top = result.ranking[0]
    kept = [p for p in result.paths if p.kept]
    assert top.votes == sum(p.item_id == top.item_id for p in kept) >= 1
    assert top.score == pytest.approx(sum(p.weight for p in kept if p.item_id == top.item_id))
    unvoted = [r for r in result.ranking if r.votes == 0]
    assert [r.logprob for r in unvoted] == sorted((r.logprob for r in unvoted), reverse=True)
    assert result.rationale in [p.rationale for p in kept if p.item_id == top.item_id]
    assert result.usage["completion_tokens"] > 0
    again = reason(hf_engine, tasks, config)[0]
    assert [r.item_id for r in again.ranking] == [r.item_id for r in result.ranking]


def test_repruning_a_sample_ranks_as_reasoning_with_that_rule_does(hf_engine, catalog) -> None:
    task = ReasoningTask(catalog, history=[1, 95, 50, 181], candidates=[100, 258, 288, 12, 121])
    config = ReasoningConfig(paths=4, max_reasoning_tokens=32, seed=3, prune="none")
    (sampled,) = reason(hf_engine, [task], config)
    for rule in ("self", "majority", "both", "none"):
        (direct,) = reason(hf_engine, [task], ReasoningConfig(paths=4, max_reasoning_tokens=32, seed=3, prune=rule))
        again = reprune(task, sampled, rule)
        assert again.ranking == direct.ranking and again.paths == direct.paths and again.fallback == direct.fallback
    assert all(p.kept for p in sampled.paths)  # the sample itself is left as it was
    with pytest.raises(LlmrecError, match="prune must be one of"):
        reprune(task, sampled, "sometimes")


@pytest.mark.parametrize("counts", [False, True])
def test_reasoning_asks_as_the_explain_task_trains(ml100k, catalog, counts: bool) -> None:
    from llmrec.adapters.task_config import TaskConfig
    from llmrec.adapters.tasks import build_examples
    from llmrec.data.splits import leave_one_out_split

    examples = build_examples(ml100k, leave_one_out_split(ml100k), "valid", TaskConfig(task="explain", counts=counts))
    for example in examples[:10]:
        task = ReasoningTask(catalog, example.history, example.candidates, counts=example.counts or None)
        assert reasoning_prompt(task, ReasoningConfig()) == example.prompt
        assert ("(chosen by " in example.prompt[-1]["content"]) == counts
