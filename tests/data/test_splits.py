import numpy as np
import pandas as pd
import pytest

from llmrec.data.dataset import RawData, encode, read_dataset, write_dataset
from llmrec.data.splits import leave_one_out_split, temporal_split
from llmrec.errors import LlmrecError


def _dataset(tmp_path, rows):
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    frame["timestamp"] = frame["timestamp"].astype(np.int64)
    interactions, items, users = encode(RawData(frame))
    return read_dataset(write_dataset(tmp_path / "ds", interactions, items, users, {"name": "t"}))


def test_leave_one_out_on_hand_made_sequences(tmp_path):
    ds = _dataset(
        tmp_path,
        [
            ("u1", "a", 1),
            ("u1", "b", 2),
            ("u1", "c", 3),
            ("u1", "d", 4),
            ("u2", "a", 1),
            ("u2", "c", 2),
            ("u3", "b", 5),
            ("u3", "a", 6),
            ("u3", "d", 7),
        ],
    )
    split = leave_one_out_split(ds)
    a, b, c, d = 1, 2, 3, 4
    assert split.valid.users.tolist() == [1, 3] and split.test.users.tolist() == [1, 3]
    assert split.valid.targets.tolist() == [c, a] and split.test.targets.tolist() == [d, d]
    assert split.history(1, int(split.test.cutoffs[0])).tolist() == [a, b, c]
    train = split.train_sequences()
    assert train[1].tolist() == [a, b] and train[2].tolist() == [a, c] and train[3].tolist() == [b]
    assert split.not_evaluated == {"too_short": 1}
    assert split.fingerprint() == leave_one_out_split(ds).fingerprint()


def test_leave_one_out_never_leaks_targets(ml100k):
    split = leave_one_out_split(ml100k)
    assert len(split.test) == 943
    train = split.train_sequences()
    for e in range(0, 943, 97):
        user = split.test.users[e]
        assert len(train[user]) == len(ml100k.sequences[user]) - 2
        assert split.valid.cutoffs[e] == len(train[user]) and split.test.cutoffs[e] == len(train[user]) + 1


def test_temporal_split(tmp_path):
    rows = [(f"u{u}", f"i{(u * 7 + t) % 5}", 10 * t + u) for u in range(4) for t in range(10)]
    ds = _dataset(tmp_path, rows)
    split = temporal_split(ds, valid_time=60, test_time=80)
    stamps = ds.interactions["timestamp"].to_numpy()
    assert len(split.valid) == int(((stamps >= 60) & (stamps < 80)).sum())
    assert len(split.test) == int((stamps >= 80).sum())
    for users, cutoffs in ((split.valid.users, split.valid.cutoffs), (split.test.users, split.test.cutoffs)):
        for user, cutoff in zip(users, cutoffs, strict=True):
            assert cutoff >= split.train_len[user]
    assert split.train_len[1:].tolist() == [6, 6, 6, 6]
    by_fraction = temporal_split(ds, valid_frac=0.2, test_frac=0.2)
    assert by_fraction.args == {"valid_time": 60, "test_time": 80}
    with pytest.raises(LlmrecError):
        temporal_split(ds, valid_frac=0.6, test_frac=0.6)
