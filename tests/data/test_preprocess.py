import numpy as np
import pandas as pd
import pytest

from llmrec.data.dataset import RawData
from llmrec.data.preprocess import Preprocessing, apply_k_core, preprocess
from llmrec.errors import LlmrecError


def _raw(rows: list[tuple]) -> RawData:
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    frame["timestamp"] = frame["timestamp"].astype(np.int64)
    return RawData(frame.astype({"rating": np.float64}))


def _pairs(raw: RawData) -> list[tuple]:
    return list(raw.interactions[["user", "item", "timestamp", "rating"]].itertuples(index=False, name=None))


def _step(raw: RawData) -> dict:
    (step,) = raw.steps
    return {"step": step.step, "rows": step.rows, "users": step.users, "items": step.items, "detail": step.detail}


def test_defaults_keep_everything():
    rows = [("u", "a", 2, 1.0), ("u", "a", 1, 5.0), ("v", "b", 1, 2.0)]
    raw = _raw(rows)
    preprocess(raw, Preprocessing())
    assert _pairs(raw) == rows and raw.steps == []


def test_rating_threshold_through_import(ml1m_dir, import_to, histories):
    ds = import_to(ml1m_dir, "movielens", options=Preprocessing(min_rating=4))
    assert ds.meta["counts"] == {"users": 3, "items": 6, "interactions": 7}
    assert ds.meta["steps"] == [{"step": "rating below 4", "rows": 3, "users": 0, "items": 1, "detail": ""}]
    assert ds.meta["options"]["min_rating"] == 4
    assert histories(ds) == {"1": ["3408", "1193"], "2": ["1357", "3068", "1193", "73"], "10": ["661"]}
    assert ds.interactions["rating"].min() == 4.0
    # ids stay dense after filtering: 914 is gone, the others are renumbered 1..6
    assert ds.items["raw_id"].tolist() == ["73", "661", "1193", "1357", "3068", "3408"]


def test_rating_threshold_drops_a_whole_user():
    raw = _raw([("u", "a", 1, 1.0), ("u", "b", 2, 2.0), ("v", "a", 1, 4.5), ("v", "c", 2, 3.5)])
    preprocess(raw, Preprocessing(min_rating=3.5))
    assert _pairs(raw) == [("v", "a", 1, 4.5), ("v", "c", 2, 3.5)]
    assert _step(raw) == {"step": "rating below 3.5", "rows": 2, "users": 1, "items": 1, "detail": ""}


def test_rating_threshold_needs_ratings(tmp_path, import_to):
    (tmp_path / "s.txt").write_text("1 2 3\n")
    with pytest.raises(LlmrecError, match="--min-rating: this source has no ratings"):
        import_to(tmp_path / "s.txt", "sequences", options=Preprocessing(min_rating=4))
    assert not (tmp_path / "out-0").exists()


# u repeats a at t=3, t=1 and t=5; w repeats x at the same second (file order decides first and last)
DUPLICATES = [
    ("u", "a", 3, 3.0),
    ("u", "b", 1, 4.0),
    ("u", "a", 1, 1.0),
    ("u", "a", 5, 5.0),
    ("v", "a", 2, 2.0),
    ("w", "x", 7, 1.0),
    ("w", "x", 7, 2.0),
]


def test_dedup_first():
    raw = _raw(DUPLICATES)
    preprocess(raw, Preprocessing(dedup="first"))
    assert _pairs(raw) == [("u", "b", 1, 4.0), ("u", "a", 1, 1.0), ("v", "a", 2, 2.0), ("w", "x", 7, 1.0)]
    assert _step(raw) == {
        "step": "repeated user-item pairs (kept the first)",
        "rows": 3,
        "users": 0,
        "items": 0,
        "detail": "",
    }


def test_dedup_last():
    raw = _raw(DUPLICATES)
    preprocess(raw, Preprocessing(dedup="last"))
    assert _pairs(raw) == [("u", "b", 1, 4.0), ("u", "a", 5, 5.0), ("v", "a", 2, 2.0), ("w", "x", 7, 2.0)]
    assert _step(raw)["rows"] == 3


def test_dedup_through_import_keeps_source_order_for_ties(ml_latest_dir, import_to, histories):
    ds = import_to(ml_latest_dir, "movielens", options=Preprocessing(dedup="last"))
    assert ds.meta["counts"] == {"users": 2, "items": 5, "interactions": 5}
    assert histories(ds)["1"] == ["3", "6", "1"]
    assert ds.interactions["rating"].tolist()[:3] == [4.0, 4.0, 5.0]
    assert ds.meta["steps"][-1] == {
        "step": "repeated user-item pairs (kept the last)",
        "rows": 1,
        "users": 0,
        "items": 0,
        "detail": "",
    }


# A 2-core that takes several passes: item i4 has one interaction, so u4 loses it and is left with one
# (on i3), so i3 is left with one (from u3), so u3 is left with one... Only u1 and u2 on i1 and i2 survive.
CHAIN = [
    ("u1", "i1"),
    ("u1", "i2"),
    ("u2", "i1"),
    ("u2", "i2"),
    ("u3", "i2"),
    ("u3", "i3"),
    ("u4", "i3"),
    ("u4", "i4"),
]


def test_k_core_iterates_to_a_fixed_point():
    raw = _raw([(u, i, t, 1.0) for t, (u, i) in enumerate(CHAIN)])
    rounds = apply_k_core(raw, 2, 2)
    # one pass alone would only drop (u4, i4): every other user and item has 2 interactions at first
    assert rounds > 2
    assert [(u, i) for u, i, _, _ in _pairs(raw)] == CHAIN[:4]
    assert _step(raw) == {
        "step": "k-core (min_user=2, min_item=2)",
        "rows": 4,
        "users": 2,
        "items": 2,
        "detail": f"{rounds} rounds to a fixed point",
    }
    counts_u = raw.interactions["user"].value_counts()
    counts_i = raw.interactions["item"].value_counts()
    assert counts_u.min() >= 2 and counts_i.min() >= 2


def test_k_core_users_only_and_items_only():
    rows = [("a", "x", 1, 1.0), ("a", "y", 2, 1.0), ("b", "x", 3, 1.0), ("c", "z", 4, 1.0)]
    raw = _raw(rows)
    preprocess(raw, Preprocessing(min_user=2))
    assert [u for u, *_ in _pairs(raw)] == ["a", "a"]
    assert (_step(raw)["rows"], _step(raw)["users"], _step(raw)["items"]) == (2, 2, 1)
    raw = _raw(rows)
    preprocess(raw, Preprocessing(min_item=2))
    assert _pairs(raw) == [("a", "x", 1, 1.0), ("b", "x", 3, 1.0)]
    assert (_step(raw)["rows"], _step(raw)["users"], _step(raw)["items"]) == (2, 1, 2)


def test_steps_run_in_order_threshold_dedup_k_core(tmp_path, import_to):
    # 2 rates b below 3; 1 repeats a; then b has one rating left, so 1 falls below 2 and goes with b
    rows = [
        ("1", "a", 5),
        ("1", "b", 5),
        ("1", "a", 4),
        ("2", "a", 5),
        ("2", "b", 1),
        ("2", "c", 5),
        ("3", "c", 5),
        ("3", "a", 5),
    ]
    lines = ["user,item,rating,time"] + [f"{u},{i},{r},{t}" for t, (u, i, r) in enumerate(rows)]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    options = Preprocessing(min_rating=3, dedup="first", min_user=2, min_item=2)
    ds = import_to(tmp_path / "r.csv", "csv", columns="user=user,item=item,rating=rating,time=time", options=options)
    steps = [(s["step"], s["rows"], s["users"], s["items"]) for s in ds.meta["steps"]]
    assert steps == [
        ("rating below 3", 1, 0, 0),
        ("repeated user-item pairs (kept the first)", 1, 0, 0),
        ("k-core (min_user=2, min_item=2)", 2, 1, 1),
    ]
    assert ds.meta["counts"] == {"users": 2, "items": 2, "interactions": 4}


def test_k_core_that_leaves_nothing_is_an_error(tmp_path, import_to):
    (tmp_path / "s.txt").write_text("1 2 3\n4 5\n")
    with pytest.raises(LlmrecError, match=r"k-core with --min-user 5 --min-item 0 leaves no interactions"):
        import_to(tmp_path / "s.txt", "sequences", options=Preprocessing(min_user=5))
    assert list(tmp_path.iterdir()) == [tmp_path / "s.txt"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dedup": "all"}, r"--dedup 'all': choose one of keep, first, last"),
        ({"tie_order": "time"}, r"--tie-order 'time': choose one of source, item"),
        ({"min_user": -1}, r"--min-user and --min-item must be 0 or more"),
    ],
)
def test_invalid_options(kwargs, message):
    with pytest.raises(LlmrecError, match=message):
        Preprocessing(**kwargs)


def test_threshold_that_leaves_nothing_is_an_error(ml1m_dir, import_to, tmp_path):
    with pytest.raises(LlmrecError, match=r"no interactions are left after filtering; relax the options"):
        import_to(ml1m_dir, "movielens", options=Preprocessing(min_rating=6))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-1m"]
