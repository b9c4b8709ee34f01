"""The paired bootstrap interval, on hand-made cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.ranking.intervals import paired_bootstrap, per_user


def test_per_user_metrics_match_the_formulas() -> None:
    ranks = np.array([0, 4, 9, 10])
    assert per_user(ranks, "hr@10").tolist() == [1, 1, 1, 0]
    assert per_user(ranks, "mrr@5").tolist() == [1.0, 0.2, 0.0, 0.0]
    np.testing.assert_allclose(per_user(ranks, "ndcg@10"), [1, 1 / np.log2(6), 1 / np.log2(11), 0])
    with pytest.raises(ValueError, match="unknown metric"):
        per_user(ranks, "auc@10")


def test_a_constant_gain_has_a_zero_width_interval_at_the_gain() -> None:
    b = np.random.default_rng(0).random(200)
    interval = paired_bootstrap(b + 0.1, b)
    assert interval.diff == pytest.approx(0.1) and interval.low == pytest.approx(0.1)
    assert interval.high == pytest.approx(0.1) and interval.beats


def test_identical_sides_never_beat_each_other() -> None:
    a = np.random.default_rng(1).integers(0, 2, 300).astype(float)
    interval = paired_bootstrap(a, a.copy())
    assert interval.diff == 0 and interval.low == 0 and interval.high == 0 and not interval.beats


def test_the_interval_matches_the_normal_approximation_for_many_users() -> None:
    """Users each gain +1 or 0 by a coin flip: mean 0.5, standard error sqrt(0.25 / n)."""
    rng = np.random.default_rng(2)
    n = 2000
    gains = rng.integers(0, 2, n).astype(float)
    interval = paired_bootstrap(gains, np.zeros(n), resamples=4000, seed=3)
    half = 1.96 * gains.std() / np.sqrt(n)
    assert interval.low == pytest.approx(gains.mean() - half, abs=0.006)
    assert interval.high == pytest.approx(gains.mean() + half, abs=0.006)


def test_noise_around_zero_gives_an_interval_across_zero() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 2, 500).astype(float), rng.integers(0, 2, 500).astype(float)
    interval = paired_bootstrap(a, b)
    assert interval.low < 0 < interval.high and not interval.beats


def test_seeds_are_averaged_per_user_before_pairing() -> None:
    a = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # two seeds, three users: per user 0.5, 0, 1
    b = np.array([0.0, 0.0, 1.0])
    interval = paired_bootstrap(a, b, resamples=500)
    assert interval.mean_a == pytest.approx(0.5) and interval.diff == pytest.approx(0.5 / 3)
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap(a, np.zeros(4))


def test_the_interval_is_reproducible_and_describes_itself() -> None:
    a = np.random.default_rng(5).random(100)
    first, again = paired_bootstrap(a, a * 0.9, seed=7), paired_bootstrap(a, a * 0.9, seed=7)
    assert first == again
    assert first.describe().startswith("+") and "[" in first.describe() and first.to_dict()["beats"]
