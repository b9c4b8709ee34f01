import hashlib
import json

import numpy as np
import pytest

from llmrec.data.dataset import FORMAT_VERSION, read_dataset
from llmrec.errors import LlmrecError


def _check_dense(dataset, users: int, items: int, interactions: int) -> None:
    frame = dataset.interactions
    assert len(frame) == interactions
    assert sorted(frame["user_id"].unique()) == list(range(1, users + 1))
    assert sorted(frame["item_id"].unique()) == list(range(1, items + 1))
    assert dataset.items["item_id"].tolist() == list(range(1, items + 1))
    assert dataset.users["user_id"].tolist() == list(range(1, users + 1))
    assert dataset.meta["counts"] == {"users": users, "items": items, "interactions": interactions}
    # sorted by user, then time
    keys = list(zip(frame["user_id"], frame["timestamp"], strict=True))
    assert keys == sorted(keys)


def test_ml1m_counts_ids_titles_and_order(ml1m_dir, import_to, histories):
    ds = import_to(ml1m_dir, "movielens")
    _check_dense(ds, users=3, items=7, interactions=10)
    # numeric raw ids are numbered numerically (10 after 2), only rated movies are kept (2858 is not)
    assert ds.users["raw_id"].tolist() == ["1", "2", "10"]
    assert ds.items["raw_id"].tolist() == ["73", "661", "914", "1193", "1357", "3068", "3408"]
    titles = dict(zip(ds.items["raw_id"], ds.items["title"], strict=True))
    assert titles["73"] == "Misérables, Les (1995)"
    assert titles["1193"] == "One Flew Over the Cuckoo's Nest (1975)"
    assert ds.items.set_index("raw_id").at["661", "genres"] == "Animation|Children's|Musical"
    assert ds.users.set_index("raw_id").loc["10", ["gender", "age", "occupation", "zip_code"]].tolist() == [
        "F",
        "35",
        "1",
        "95370",
    ]
    # time order per user; equal timestamps keep the file order (3408 before 1193, 3068 before 1193)
    assert histories(ds) == {
        "1": ["3408", "1193", "914", "661"],
        "2": ["1357", "3068", "1193", "73"],
        "10": ["661", "661"],
    }
    assert ds.sequences[1].tolist() == [7, 4, 3, 2]
    user1 = ds.interactions[ds.interactions["user_id"] == 1]
    assert user1["timestamp"].tolist() == [978300760, 978300760, 978301968, 978302109]
    assert user1["rating"].tolist() == [4.0, 5.0, 3.0, 3.0]
    # the repeated rating is kept, in order
    assert ds.interactions[ds.interactions["user_id"] == 3]["rating"].tolist() == [2.0, 4.0]
    assert ds.user_id("10") == 3
    assert ds.titles[1] == "Misérables, Les (1995)" and ds.titles[0] == ""


def test_ml1m_tie_order_item(ml1m_dir, import_to, histories):
    from llmrec.data.preprocess import Preprocessing

    ds = import_to(ml1m_dir, "movielens", options=Preprocessing(tie_order="item"))
    assert histories(ds) == {
        "1": ["1193", "3408", "914", "661"],
        "2": ["1357", "1193", "3068", "73"],
        "10": ["661", "661"],
    }
    assert ds.meta["options"]["tie_order"] == "item"


def test_ml1m_meta_json(ml1m_dir, import_to):
    ds = import_to(ml1m_dir, "movielens", name="ml-1m-mini")
    meta = json.loads((ds.path / "meta.json").read_text())
    assert meta["name"] == "ml-1m-mini"
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["source"] == {"path": str(ml1m_dir.resolve()), "format": "movielens:dat"}
    assert meta["counts"] == {"users": 3, "items": 7, "interactions": 10}
    assert meta["steps"] == []
    assert meta["timestamp_unit"] == "s"
    assert meta["items_without_title"] == 0
    assert set(meta["sha256"]) == {"interactions.parquet", "items.parquet", "users.parquet"}
    for name, digest in meta["sha256"].items():
        assert hashlib.sha256((ds.path / name).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in ds.path.iterdir()) == [
        "interactions.parquet",
        "items.parquet",
        "meta.json",
        "users.parquet",
    ]


def test_modified_dataset_file_is_detected(ml1m_dir, import_to):
    ds = import_to(ml1m_dir, "movielens")
    with open(ds.path / "interactions.parquet", "ab") as f:
        f.write(b"x")
    with pytest.raises(LlmrecError, match=r"interactions.parquet: missing or modified"):
        read_dataset(ds.path)
    with pytest.raises(LlmrecError, match=r"interactions.parquet: cannot read .*re-import"):
        read_dataset(ds.path, check=False)


def test_ml1m_ratings_of_unknown_movies_are_dropped_and_reported(ml1m_dir, import_to):
    with open(ml1m_dir / "ratings.dat", "a") as f:
        f.write("2::9999::3::978300001\n10::9998::1::978300002\n")
    ds = import_to(ml1m_dir, "movielens")
    assert ds.meta["counts"] == {"users": 3, "items": 7, "interactions": 10}
    assert ds.meta["steps"] == [
        {
            "step": "ratings of items missing from the movies file",
            "rows": 2,
            "users": 0,
            "items": 2,
            "detail": "movies.dat",
        }
    ]


def test_ml1m_with_a_file_path_and_without_users(ml1m_dir, import_to):
    (ml1m_dir / "users.dat").unlink()
    ds = import_to(ml1m_dir / "ratings.dat", "movielens")
    assert ds.users.columns.tolist() == ["user_id", "raw_id"]
    assert ds.meta["counts"]["interactions"] == 10


def test_ml10m_utf8_files_and_tags_as_review_text(ml1m_dir, import_to):
    # ML-10M layout: no users.dat, a tags.dat; these files may be UTF-8 rather than latin-1
    (ml1m_dir / "users.dat").unlink()
    movies = ml1m_dir / "movies.dat"
    movies.write_text(movies.read_text(encoding="latin-1"), encoding="utf-8")
    (ml1m_dir / "tags.dat").write_text(
        "1::3408::true story::978300800\n1::3408::Julia Roberts::978300900\n2::73::Hugo, café::978300010\n",
        encoding="utf-8",
    )
    ds = import_to(ml1m_dir, "movielens")
    assert ds.items.set_index("raw_id").at["73", "title"] == "Misérables, Les (1995)"
    reviews = dict(zip(ds.interactions["item_id"], ds.interactions["review"], strict=True))
    assert reviews[7] == "true story; Julia Roberts"
    assert reviews[1] == "Hugo, café"
    assert reviews[4] == ""


def test_ml_latest_csv(ml_latest_dir, import_to, histories):
    ds = import_to(ml_latest_dir, "movielens")
    _check_dense(ds, users=2, items=5, interactions=6)
    assert ds.meta["source"]["format"] == "movielens:csv"
    assert ds.items["raw_id"].tolist() == ["1", "3", "6", "29", "318"]
    titles = dict(zip(ds.items["raw_id"], ds.items["title"], strict=True))
    assert titles["318"] == "Shawshank Redemption, The (1994)"
    assert titles["29"] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
    assert ds.items.set_index("raw_id").at["6", "genres"] == "Action|Crime|Thriller"
    assert histories(ds) == {"1": ["3", "6", "1", "1"], "2": ["318", "29"]}
    user1 = ds.interactions[ds.interactions["user_id"] == 1]
    assert user1["rating"].tolist() == [4.0, 4.0, 4.0, 5.0]
    assert user1["timestamp"].tolist() == [964981247, 964982224, 964982703, 964983000]
    reviews = ds.interactions.set_index("item_id")["review"]
    assert reviews.at[5] == "inspirational; prison, escape"
    assert reviews.at[4] == ""
    assert ds.meta["steps"] == [
        {
            "step": "tags without a matching rating (not imported)",
            "rows": 1,
            "users": 0,
            "items": 0,
            "detail": "tags.csv",
        }
    ]


def test_ml_latest_crlf_and_byte_order_mark(ml_latest_dir, import_to):
    text = (ml_latest_dir / "ratings.csv").read_text()
    (ml_latest_dir / "ratings.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    ds = import_to(ml_latest_dir, "movielens")
    assert ds.meta["counts"] == {"users": 2, "items": 5, "interactions": 6}
    assert ds.users["raw_id"].tolist() == ["1", "2"]


def test_ml100k(ml100k_dir, import_to, histories):
    ds = import_to(ml100k_dir, "movielens")
    _check_dense(ds, users=3, items=6, interactions=6)
    assert ds.meta["source"]["format"] == "movielens:ml-100k"
    assert ds.users["raw_id"].tolist() == ["22", "186", "196"]
    assert ds.items["raw_id"].tolist() == ["51", "242", "302", "346", "377", "1291"]
    items = ds.items.set_index("raw_id")
    assert items.at["1291", "title"] == "Célestial Clockwork (1994)"
    assert items.at["242", "title"] == "Kolya (1996)"
    assert items.at["302", "genres"] == "Crime|Film-Noir|Mystery|Thriller"
    assert items.at["51", "genres"] == "Drama|Romance|War|Western"
    assert items.at["242", "release_date"] == "24-Jan-1997"
    # 242 and 51 share a timestamp: file order (242 first)
    assert histories(ds) == {"22": ["1291", "377"], "186": ["346", "302"], "196": ["242", "51"]}
    assert ds.users.set_index("raw_id").loc["186", ["age", "gender", "occupation", "zip_code"]].tolist() == [
        "39",
        "F",
        "executive",
        "00000",
    ]
    assert np.array_equal(ds.interactions["rating"].to_numpy(), [4.0, 1.0, 1.0, 3.0, 3.0, 2.0])


def test_ml100k_genre_file_overrides_builtin_genre_names(ml100k_dir, import_to):
    names = ["unknown", "Action", "Adventure", "Animation", "Kids", "Comedy"] + [f"G{i}" for i in range(6, 19)]
    (ml100k_dir / "u.genre").write_text("".join(f"{name}|{i}\n" for i, name in enumerate(names)) + "\n")
    ds = import_to(ml100k_dir, "movielens")
    assert ds.items.set_index("raw_id").at["377", "genres"] == "Kids|Comedy"
