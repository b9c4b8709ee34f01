import json
import os

from llmrec.data.builtin import builtin_dir, load_dataset
from llmrec.data.stats import dataset_stats


def test_ml100k_counts_titles_and_order(ml100k):
    stats = dataset_stats(ml100k)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100_000)
    assert abs(stats["avg_seq_len"] - 100_000 / 943) < 1e-3
    assert abs(stats["density"] - 100_000 / (943 * 1682)) < 1e-6
    items = ml100k.items.set_index("raw_id")
    assert items.at["1", "title"] == "Toy Story"
    assert items.at["2", "title"] == "GoldenEye"
    frame = ml100k.interactions
    assert frame["item_id"].between(1, 1682).all() and frame["user_id"].between(1, 943).all()
    assert (frame.groupby("user_id")["timestamp"].diff().dropna() >= 0).all()
    # raw user 196 is internal 196 (numeric raw ids are numbered in numeric order)
    assert ml100k.user_id("196") == 196


def test_ml100k_is_imported_once_and_reimported_when_modified(ml100k):
    path = builtin_dir("ml-100k")
    stamp = (path / "meta.json").stat().st_mtime_ns
    assert load_dataset("ml-100k").path == path
    assert (path / "meta.json").stat().st_mtime_ns == stamp
    (path / "splits").mkdir(exist_ok=True)  # the c20 candidates cached beside the data belong to it
    with open(path / "items.parquet", "ab") as f:
        f.write(b"junk")
    again = load_dataset("ml-100k")
    assert len(again.interactions) == 100_000
    meta = json.loads((path / "meta.json").read_text())
    assert meta["counts"] == {"users": 943, "items": 1682, "interactions": 100_000}
    assert not [p for p in os.listdir(path.parent) if p.endswith(".tmp")]


def test_ml100k_text_attributes_as_prompts_show_them(ml100k):
    golden_eye = int(ml100k.items.set_index("raw_id").at["2", "item_id"])
    assert ml100k.text_attributes[golden_eye] == {"release year": "1995", "class": "Action Adventure Thriller"}
    assert ml100k.attribute_texts[golden_eye] == "release year: 1995; class: Action Adventure Thriller"
    assert ml100k.described_titles[golden_eye] == "GoldenEye (release year: 1995; class: Action Adventure Thriller)"
