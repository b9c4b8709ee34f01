import numpy as np
import pytest
import torch

from llmrec.data.splits import leave_one_out_split
from llmrec.ranking.metrics import ranking_metrics, target_ranks
from llmrec.ranking.protocols import c20_candidates, evaluate, parse_protocol, sample_negatives


def test_ties_count_against_the_target_and_nan_is_an_error():
    scores = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 1.0]])
    assert target_ranks(scores, np.array([0, 2])).tolist() == [2, 1]
    with pytest.raises(FloatingPointError):
        target_ranks(np.array([[np.nan, 1.0]]), np.array([0]))
    metrics = ranking_metrics(np.array([0, 1, 9, 10]), ks=(10,))
    assert metrics["hr@10"] == 0.75
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 4)
    assert metrics["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 4)


def popularity_scorer(num_items, order):
    """Scores every history the same: item ``order[r]`` gets score -r."""
    base = torch.zeros(num_items + 1)
    base[torch.as_tensor(order)] = -torch.arange(len(order), dtype=torch.float32)

    def score(histories, candidates):
        full = base.expand(len(histories), -1).clone()
        full[:, 0] = float("-inf")
        return full if candidates is None else full.gather(1, candidates)

    return score


def test_full_protocol_ranks_and_masking(ml100k):
    split = leave_one_out_split(ml100k)
    n = ml100k.num_items
    order = np.arange(1, n + 1)
    result = evaluate(popularity_scorer(n, order), split, "test", num_items=n, max_len=50)
    expected = ranking_metrics(split.test.targets - 1)
    assert result["protocol"] == "full" and result["split"] == "test" and result["mask_history"] is False
    assert result["examples"] == 943 and result["ndcg@10"] == pytest.approx(expected["ndcg@10"])
    masked = evaluate(popularity_scorer(n, order), split, "test", num_items=n, max_len=50, mask_history=True)
    assert masked["mask_history"] is True and masked["hr@20"] >= result["hr@20"]
    user, cutoff, target = split.test.users[0], split.test.cutoffs[0], split.test.targets[0]
    seen = set(split.sequences[user][:cutoff].tolist()) - {target}
    assert masked["examples"] == 943 and len(seen) > 0
    kept = evaluate(popularity_scorer(n, order), split, "test", num_items=n, max_len=50, keep_ranks=True)
    assert kept["users"] == split.test.users.tolist() and kept["ranks"] == (split.test.targets - 1).tolist()
    assert "ranks" not in result


def test_nan_scores_are_an_error_not_a_hit(ml100k):
    split = leave_one_out_split(ml100k)

    def broken(histories, candidates):
        out = torch.full((len(histories), ml100k.num_items + 1), float("nan"))
        return out if candidates is None else out[:, : candidates.shape[1]]

    for protocol in ("full", "c20"):
        with pytest.raises(FloatingPointError):
            evaluate(broken, split, "test", num_items=ml100k.num_items, max_len=50, protocol=protocol)


def test_sampled_negatives_are_unseen_and_distinct(ml100k):
    split = leave_one_out_split(ml100k)
    for popularity in (False, True):
        negatives = sample_negatives(split, split.test, ml100k.num_items, 100, seed=3, popularity=popularity)
        assert negatives.shape == (943, 100)
        for row in range(0, 943, 50):
            seen = set(split.sequences[split.test.users[row]].tolist())
            assert len(set(negatives[row].tolist())) == 100 and not seen & set(negatives[row].tolist())
    result = evaluate(
        popularity_scorer(ml100k.num_items, np.arange(1, ml100k.num_items + 1)),
        split,
        "test",
        num_items=ml100k.num_items,
        max_len=50,
        protocol="sampled-100-pop",
    )
    assert result["protocol"] == "sampled-100-pop" and result["negatives"]["sampling"] == "popularity"
    assert parse_protocol("sampled-100").name == "sampled-100"


def test_c20_candidates_are_fixed_saved_and_shared(ml100k, tmp_path):
    split = leave_one_out_split(ml100k)
    first = c20_candidates(split, "test", ml100k.num_items, tmp_path)
    files = list(tmp_path.glob("c20-*-test.npy"))
    assert len(files) == 1 and np.array_equal(np.load(files[0]), first)
    assert np.array_equal(c20_candidates(split, "test", ml100k.num_items, None), first)
    assert first.shape == (943, 20)
    for row in range(0, 943, 37):
        user, target = split.test.users[row], split.test.targets[row]
        assert target in first[row] and len(set(first[row].tolist())) == 20
        others = set(first[row].tolist()) - {target}
        assert not others & set(split.sequences[user].tolist())
    positions = (first == split.test.targets[:, None]).argmax(1)
    assert len(set(positions.tolist())) > 10  # the target is not always in the same slot
    valid = c20_candidates(split, "valid", ml100k.num_items, tmp_path)
    assert not np.array_equal(valid, first)
