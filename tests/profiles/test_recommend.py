"""Recommending with a profile: dense (MiniLM) over candidates and the whole catalog, LLM ranking, blending."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.adapters.representations import load_embedder, text_item_vectors
from llmrec.profiles.recommend import DenseProfiles, blend, llm_scores, profile_prompt, prompt_tokens, standardise


@pytest.fixture(scope="module")
def dense(amazon):
    vectors, _ = text_item_vectors(amazon, device="cpu")
    return DenseProfiles(load_embedder(None, "cpu"), vectors)


def item(amazon, title: str) -> int:
    return int(amazon.items.loc[amazon.items["title"] == title, "item_id"].iat[0])


def test_dense_scores_find_the_items_a_profile_describes(dense, amazon) -> None:
    texts = ["Likes: vanilla scent, sweet fragrance.", "Likes: magnetic building toys.", ""]
    catalog = dense.scores(texts)
    assert catalog.shape == (3, amazon.num_items + 1) and np.isneginf(catalog[:, 0]).all()
    assert int(np.argmax(catalog[0])) == item(amazon, "Vanilla Scented Body Wash")
    assert int(np.argmax(catalog[1])) == item(amazon, "Magnetic Building Tiles 60 Pieces")
    assert np.allclose(catalog[2, 1:], 0)  # no profile: every item alike
    candidates = np.array([[item(amazon, "Heavy Duty Stapler"), item(amazon, "Vanilla Scented Body Wash")]] * 3)
    among = dense.scores(texts, candidates)
    assert among.shape == (3, 2) and among[0, 1] > among[0, 0]
    np.testing.assert_allclose(among[0], catalog[0][candidates[0]], rtol=1e-5)


def test_facet_scores_take_each_aspects_best_match_and_subtract_dislikes(dense, amazon) -> None:
    from llmrec.profiles.schema import Fact, Profile

    def profile(*facts: tuple[str, str]) -> Profile:
        return Profile("u", 1, 1, tuple(Fact(kind, aspect, "", "r1") for kind, aspect in facts))

    mixed = profile(("like", "vanilla scent"), ("like", "heavy duty"), ("feature", "magnetic tiles"))
    disliked = profile(("like", "vanilla scent"), ("dislike", "body wash"))
    catalog = dense.facet_scores([mixed, disliked, None])
    assert catalog.shape == (3, amazon.num_items + 1) and np.isneginf(catalog[:, 0]).all()
    # likes and looked-for features alike: each item's best cosine over the three aspects
    best = (dense.items[1:] @ dense.embed(["vanilla scent", "heavy duty", "magnetic tiles"]).T).max(axis=1)
    np.testing.assert_allclose(catalog[0, 1:], best, rtol=1e-5)
    vanilla, stapler = item(amazon, "Vanilla Scented Body Wash"), item(amazon, "Heavy Duty Stapler")
    assert int(np.argmax(catalog[0])) in {vanilla, stapler, item(amazon, "Magnetic Building Tiles 60 Pieces")}
    assert np.allclose(catalog[2, 1:], 0)  # no profile: every item alike
    aspects = dense.embed(["vanilla scent", "body wash"])
    expected = dense.items[vanilla] @ aspects[0] - 0.5 * dense.items[vanilla] @ aspects[1]
    candidates = np.array([[stapler, vanilla]] * 3)
    among = dense.facet_scores([mixed, disliked, None], candidates, dislike=0.5)
    assert among.shape == (3, 2)
    np.testing.assert_allclose(among[1, 1], expected, rtol=1e-5)
    np.testing.assert_allclose(among[0], catalog[0][candidates[0]], rtol=1e-5)  # dislike 0.5 changes no like-only row
    assert dense.facet_scores([disliked], candidates[:1], dislike=0.0)[0, 1] > among[1, 1]


def test_blending_standardises_each_side() -> None:
    first, second = np.array([[1.0, 2.0, 3.0]]), np.array([[30.0, 20.0, 10.0]])
    np.testing.assert_allclose(blend(first, second, 0.5), 0.0, atol=1e-12)
    np.testing.assert_allclose(blend(first, second, 0.0), standardise(first))


def test_the_llm_ranks_candidates_with_the_profile_in_the_users_message(hf_engine) -> None:
    candidates = [["Vanilla Scented Body Wash", "Heavy Duty Stapler", "Plush Lamb Soft Toy"]]
    prompts = [profile_prompt(candidates[0], profile="Likes: vanilla scent.", history=["Glitter Hair Clips Set"])]
    assert [m["role"] for m in prompts[0]] == ["user"] and "Likes: vanilla scent." in prompts[0][0]["content"]
    scores = llm_scores(hf_engine, prompts, candidates)
    assert scores.shape == (1, 3) and np.isfinite(scores).all() and (scores < 0).all()
    longer = profile_prompt(candidates[0], reviews=["I love the vanilla scent, it lasts all day."] * 5)
    assert prompt_tokens(hf_engine, [longer])[0] > prompt_tokens(hf_engine, prompts)[0]
