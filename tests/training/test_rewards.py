"""Every reward on hand-computed cases over the ML-100K catalog: malformed completions, empty answers, unknown
titles, items in the history, repeats, ranks, future items, agreement within a group, and the black box."""

from __future__ import annotations

import math
import pickle

import pytest

from llmrec.training.rewards import (
    BlackBoxReward,
    ConsistencyReward,
    FormatReward,
    MSRAReward,
    RankReward,
    ValidityReward,
)

TOY, GOLDENEYE, STAR_WARS, FARGO, CONTACT = 1, 2, 50, 100, 258
WELL = "The user likes science fiction, so a space film fits.\nAnswer: "


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_format_gives_a_bonus_or_a_penalty() -> None:
    reward = FormatReward(bonus=0.2, penalty=-1.0)
    assert reward([None] * 3, [WELL + "Star Wars", chat(WELL + "Fargo"), "Star Wars"]) == [0.2, 0.2, -1.0]
    assert reward.__name__ == "format"


def test_validity_penalises_unknown_outside_history_and_repeated_items(catalog) -> None:
    reward = ValidityReward(catalog, unknown=-1.0, not_candidate=-0.5, in_history=-0.25, repeated=-0.125)
    completions = [
        WELL + "Star Wars",  # valid
        WELL + "Toy Story 9",  # no such item
        WELL + "Contact",  # not a candidate
        WELL + "Toy Story",  # in the history
        WELL + "Star Wars; Star Wars",  # repeated
        "Star Wars",  # malformed: the format reward's business
    ]
    columns = {"candidates": [[STAR_WARS, FARGO, TOY]] * 6, "history": [[TOY]] * 6}
    assert reward([None] * 6, completions, **columns) == [0.0, -1.0, -0.5, -0.25, -0.125, 0.0]


def test_rank_rewards_the_targets_position(catalog) -> None:
    reward = RankReward(catalog)
    completions = [WELL + "Star Wars", WELL + "Fargo; Star Wars", WELL + "Fargo; Contact; Star Wars", WELL + "Fargo",
                   "Star Wars"]  # fmt: skip
    got = reward([None] * 5, completions, target=[STAR_WARS] * 5)
    assert got == pytest.approx([1.0, 1 / math.log2(3), 0.5, 0.0, 0.0])


def test_msra_counts_the_next_items_discounted(catalog) -> None:
    reward = MSRAReward(catalog, horizon=2, gamma=0.5)
    future = [[FARGO, CONTACT, TOY]] * 4
    completions = [WELL + "Fargo", WELL + "Contact", WELL + "Star Wars; Contact; Fargo", WELL + "Toy Story"]
    got = reward([None] * 4, completions, future=future)
    assert got == pytest.approx([0.5, 0.25, 0.5 / 2 + 0.25 / math.log2(3), 0.0])  # Toy Story is beyond horizon 2


def test_consistency_is_agreement_within_each_prompts_group(catalog) -> None:
    reward = ConsistencyReward(catalog)
    prompts = ["p1"] * 4 + ["p2"] * 2
    completions = [WELL + "Fargo", WELL + "Fargo", WELL + "Fargo; Heat", WELL + "Contact", WELL + "Fargo", "Fargo"]
    assert reward(prompts, completions) == pytest.approx([2 / 3, 2 / 3, 2 / 3, 0.0, 0.0, 0.0])


def test_the_black_box_scores_the_query_by_the_retrievers_ranking(ml100k) -> None:
    from llmrec.catalog.retrievers import BM25Retriever

    reward = BlackBoxReward("ml-100k", "bm25", k=10, horizon=1, gamma=0.5)
    ranked = BM25Retriever(ml100k).search(["star wars"], 10)[0]
    target, future = ranked[2], ranked[0]
    got = reward([None] * 3, [WELL + "star wars", "star wars", WELL + "zzqx"], target=[target] * 3,
                 future=[[future]] * 3)  # fmt: skip
    assert got[0] == pytest.approx(1 / math.log2(4) + 0.5) and got[1] == 0.0
    assert got[2] == pytest.approx(_tie_gain(ranked_for_no_words(ml100k), target, future))
    again = pickle.loads(pickle.dumps(reward))  # small and picklable: the retriever is rebuilt on first use
    assert again._search is None and again([None], [WELL + "star wars"], target=[target]) == [1 / math.log2(4)]


def ranked_for_no_words(ml100k) -> list[int]:
    from llmrec.catalog.retrievers import BM25Retriever

    return BM25Retriever(ml100k).search(["zzqx"], 10)[0]


def _tie_gain(ranked: list[int], target: int, future: int) -> float:
    score = 1 / math.log2(ranked.index(target) + 2) if target in ranked else 0.0
    return score + (0.5 / math.log2(ranked.index(future) + 2) if future in ranked else 0.0)


def test_a_title_two_items_share_names_the_candidate_then_an_item_outside_the_history(catalog) -> None:
    amy, other_amy = 246, 268  # ML-100K lists "Chasing Amy" twice
    assert catalog.title(amy) == catalog.title(other_amy) == "Chasing Amy"
    completions = [WELL + "Chasing Amy"] * 2
    columns = {"candidates": [[STAR_WARS, other_amy], []], "history": [[], [amy]], "target": [other_amy] * 2}
    assert ValidityReward(catalog)([None] * 2, completions, **columns) == [0.0, 0.0]  # neither a stranger nor seen
    assert RankReward(catalog)([None] * 2, completions, **columns) == [1.0, 1.0]
    assert MSRAReward(catalog, horizon=1)([None] * 2, completions, future=[[other_amy]] * 2, **{
        k: v for k, v in columns.items() if k != "target"}) == [0.5, 0.5]  # fmt: skip


def test_k_0_grades_the_target_wherever_the_retriever_ranks_it(ml100k) -> None:
    from llmrec.catalog.retrievers import BM25Retriever

    ranked = BM25Retriever(ml100k).search(["drama"], ml100k.num_items)[0]  # every item whose class says Drama
    deep = ranked[250]
    whole = BlackBoxReward("ml-100k", "bm25", k=0)
    top = BlackBoxReward("ml-100k", "bm25", k=100)
    unmatched = next(i for i in range(1, ml100k.num_items + 1) if i not in ranked)
    got = whole([None] * 2, [WELL + "drama"] * 2, target=[deep, unmatched])
    assert got == [pytest.approx(1 / math.log2(252)), 0.0]  # an item sharing no word with the query is not ranked
    assert top([None], [WELL + "drama"], target=[deep]) == [0.0]
    with pytest.raises(ValueError, match="0 for the retriever's whole ranking"):
        BlackBoxReward("ml-100k", "bm25", k=-1)
