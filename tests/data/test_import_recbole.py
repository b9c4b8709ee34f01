import math

import pytest

from llmrec.data.importers import read_source
from llmrec.errors import InputError


def test_recbole_atomic_files(recbole_dir, import_to, histories):
    ds = import_to(recbole_dir, "recbole")
    assert ds.meta["counts"] == {"users": 3, "items": 3, "interactions": 4}
    assert ds.meta["source"]["format"] == "recbole"
    assert ds.meta["timestamp_unit"] == "s"
    assert ds.users["raw_id"].tolist() == ["22", "186", "196"]
    assert ds.items["raw_id"].tolist() == ["242", "302", "377"]
    # 242 and 377 share user 196's timestamp: file order
    assert histories(ds) == {"22": ["242"], "186": ["302"], "196": ["242", "377"]}
    assert ds.interactions["rating"].tolist() == [5.0, 3.0, 3.0, 1.0]
    assert ds.interactions["timestamp"].tolist() == [878887000, 891717742, 881250949, 881250949]
    items = ds.items.set_index("raw_id")
    assert items["title"].tolist() == ["Kolya", "L.A. Confidential", "Heavyweights"]
    assert items.at["302", "class"] == "Crime Film-Noir Mystery Thriller"
    assert items.at["242", "release_year"] == "1996"
    # float attributes are numbers; an empty field is a missing value
    assert items.at["242", "price"] == 9.5 and items.at["377", "price"] == 3.0
    assert math.isnan(items.at["302", "price"])
    assert ds.users.set_index("raw_id").at["186", "occupation"] == "executive"
    assert ds.meta["steps"] == [
        {
            "step": "interactions of items missing from the item file",
            "rows": 1,
            "users": 0,
            "items": 1,
            "detail": "mini.item",
        }
    ]


def test_recbole_inter_file_alone_and_passed_directly(recbole_dir, import_to):
    (recbole_dir / "mini.item").unlink()
    (recbole_dir / "mini.user").unlink()
    ds = import_to(recbole_dir / "mini.inter", "recbole")
    assert ds.meta["counts"] == {"users": 3, "items": 4, "interactions": 5}
    assert ds.meta["steps"] == []
    # without item metadata the raw id is the title, and the report says how many items lack one
    assert ds.items["title"].tolist() == ds.items["raw_id"].tolist() == ["242", "302", "377", "999"]
    assert ds.meta["items_without_title"] == 4


def test_recbole_without_timestamp_uses_file_order(tmp_path, import_to, histories):
    (tmp_path / "seq.inter").write_text("user_id:token\titem_id:token\nb\tx\na\tz\nb\ty\na\tx\nb\tx\n")
    ds = import_to(tmp_path / "seq.inter", "recbole")
    assert ds.meta["timestamp_unit"] == "index"
    assert histories(ds) == {"a": ["z", "x"], "b": ["x", "y", "x"]}
    assert "rating" not in ds.interactions


def test_recbole_exact_title_field_wins_over_suffixed_one(recbole_dir, import_to):
    (recbole_dir / "mini.item").write_text(
        "item_id:token\tmovie_title:token_seq\ttitle:token_seq\n242\tKolya\tKolya (1996)\n302\tL.A.\tL.A. (1997)\n"
        "377\tHeavy\tHeavyweights (1994)\n"
    )
    ds = import_to(recbole_dir, "recbole")
    items = ds.items.set_index("raw_id")
    assert items["title"].tolist() == ["Kolya (1996)", "L.A. (1997)", "Heavyweights (1994)"]
    assert items["movie_title"].tolist() == ["Kolya", "L.A.", "Heavy"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("mini.inter", "user_id\titem_id:token\n1\t2\n", r"mini.inter:1: header field 'user_id' is not NAME:TYPE"),
        ("mini.inter", "user_id:token\tstuff:token\n1\t2\n", r"mini.inter:1: header lacks item_id:token"),
        (
            "mini.inter",
            "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t5\n1\t3\tlater\n",
            r"mini.inter:3: timestamp 'later' is not a number",
        ),
        ("mini.inter", "user_id:token\titem_id:token\n1\t2\n1\n", r"mini.inter:3: expected 2 fields .*found 1"),
        ("mini.item", "item_id:token\tprice:float\n242\tcheap\n", r"mini.item:2: price 'cheap' is not a number"),
        ("mini.user", "age:token\n3\n", r"mini.user:1: header lacks user_id:token"),
    ],
)
def test_recbole_bad_files_name_file_and_line(recbole_dir, name, text, message):
    (recbole_dir / name).write_text(text)
    with pytest.raises(InputError, match=message):
        read_source(recbole_dir, "recbole")


def test_recbole_source_must_be_one_inter_file(tmp_path):
    with pytest.raises(InputError, match="no .inter file"):
        read_source(tmp_path, "recbole")
    (tmp_path / "a.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    (tmp_path / "b.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(InputError, match=r"several .inter files \(a.inter, b.inter\)"):
        read_source(tmp_path, "recbole")
    with pytest.raises(InputError, match="not found"):
        read_source(tmp_path / "missing", "recbole")
    (tmp_path / "c.txt").write_text("x")
    with pytest.raises(InputError, match="not a RecBole .inter file"):
        read_source(tmp_path / "c.txt", "recbole")
