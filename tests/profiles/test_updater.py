"""The profile updater on the real tokenizer and MiniLM: dedup, conflicts, recency, budget, determinism."""

from __future__ import annotations

from llmrec.profiles.schema import Fact, Profile, diff_profiles, render_profile
from llmrec.profiles.updater import ProfileUpdater


def fact(kind: str, aspect: str, review: str = "r1") -> Fact:
    return Fact(kind, aspect, f"quote about {aspect}", review)


def test_similar_aspects_reinforce_one_fact(updater) -> None:
    first = updater.merge(None, [fact("like", "soft fabric")], "u")
    again = updater.merge(first, [fact("like", "soft fabrics", "r2"), fact("like", "bright colors", "r2")], "u")
    likes = again.of_kind("like")
    assert [f.aspect for f in likes] == ["soft fabric", "bright colors"]  # the reinforced fact is the stronger
    assert likes[0].strength == 2 and likes[0].review == "r2" and likes[0].seen == 2
    assert again.version == 2 and again.reviews == 2


def test_a_newer_dislike_replaces_an_older_like_of_the_aspect(updater) -> None:
    liked = updater.merge(None, [fact("like", "vanilla scent"), fact("like", "glitter clips")], "u")
    changed = updater.merge(liked, [fact("dislike", "vanilla smell", "r2")], "u")
    assert [f.aspect for f in changed.of_kind("like")] == ["glitter clips"]
    assert [f.aspect for f in changed.of_kind("dislike")] == ["vanilla smell"]
    assert diff_profiles(liked, changed) == {"added": ["dislike: vanilla smell"], "removed": ["like: vanilla scent"]}


def test_recency_orders_and_the_budget_drops_the_lightest(updater) -> None:
    small = ProfileUpdater(tokenizer=updater.tokenizer, embedder=updater.embedder, budget=12, half_life=1.0)
    profile = None
    for n, aspect in enumerate(["wooden toys", "board games", "puzzles", "outdoor play", "science kits"]):
        profile = small.merge(profile, [fact("like", aspect, f"r{n}")], "u")
    assert small.tokens(render_profile(profile)) <= 12
    kept = [f.aspect for f in profile.of_kind("like")]
    assert kept[0] == "science kits" and "wooden toys" not in kept  # newest first; the oldest dropped first


def test_the_same_inputs_give_the_same_profile(updater) -> None:
    facts = [fact("feature", "usb charging"), fact("like", "long battery"), fact("dislike", "loud fan")]
    one = updater.merge(Profile("u"), facts, "u")
    two = updater.merge(Profile("u"), list(reversed(facts)), "u")
    assert one == two and one.to_json() == Profile.from_json(one.to_json()).to_json()


def test_a_stated_preference_counts_no_review(updater) -> None:
    profile = updater.merge(None, [fact("like", "jazz")], "u", reviews=0)
    assert profile.reviews == 0 and profile.version == 1
