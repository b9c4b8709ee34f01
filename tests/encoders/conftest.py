from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llmrec.data.dataset import RawData, encode, write_dataset


def make_walk_dataset(path: Path, users: int = 150, items: int = 80, length: int = 30, seed: int = 0) -> Path:
    """Users walk through the catalog mostly one step at a time: a pattern any sequential model can learn."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        item = int(rng.integers(items))
        for t in range(int(rng.integers(length // 2, length + 1))):
            rows.append((f"u{user}", f"i{item}", t))
            item = (item + (1 if rng.random() < 0.9 else int(rng.integers(items)))) % items
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    interactions, catalog, user_table = encode(RawData(frame))
    catalog["title"] = [f"Item {raw}" for raw in catalog["raw_id"]]
    return write_dataset(path, interactions, catalog, user_table, {"name": "walk"})


@pytest.fixture(scope="session")
def walk_dataset(tmp_path_factory) -> Path:
    return make_walk_dataset(tmp_path_factory.mktemp("walk") / "walk")
