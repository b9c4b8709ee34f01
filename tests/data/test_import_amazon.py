import gzip
import json

import pytest

from llmrec.data.importers import read_source
from llmrec.data.preprocess import Preprocessing
from llmrec.errors import InputError


def test_amazon_2018_gzip_with_metadata(amazon2018, import_to, histories):
    reviews, meta = amazon2018
    ds = import_to(reviews, "amazon", meta=meta)
    assert ds.meta["source"]["format"] == "amazon:2018"
    assert ds.meta["timestamp_unit"] == "s"
    assert ds.meta["counts"] == {"users": 2, "items": 3, "interactions": 4}
    # B00LOST is not in the metadata: skipped and reported
    assert ds.meta["steps"] == [
        {
            "step": "reviews of items missing from the metadata",
            "rows": 1,
            "users": 0,
            "items": 1,
            "detail": "meta_Gadgets.json",
        }
    ]
    assert ds.users["raw_id"].tolist() == ["A1", "A2"]
    assert ds.items["raw_id"].tolist() == ["B001", "B002", "B003"]
    # A2 reviewed B002 and B001 in the same second: file order
    assert histories(ds) == {"A1": ["B003", "B001"], "A2": ["B002", "B001"]}
    frame = ds.interactions
    assert frame["rating"].tolist() == [4.0, 5.0, 3.0, 1.0]
    assert frame["timestamp"].tolist() == [1472000000, 1472688000, 1472600000, 1472600000]
    assert frame["review"].tolist() == ["ok", "Works great, sturdy.", "", "broke"]
    assert frame["review_title"].tolist() == ["Fine", "Five Stars", "Meh", "One Star"]
    items = ds.items.set_index("raw_id")
    # the first metadata record of a repeated item wins; an empty title falls back to the raw id
    assert items["title"].tolist() == ["Acme Widget", "Gizmo Pro", "B003"]
    assert ds.meta["items_without_title"] == 1
    assert items.at["B001", "categories"] == "Home & Kitchen > Gadgets"
    assert items.at["B002", "categories"] == "Electronics > Accessories"
    assert items.at["B001", "brand"] == "Acme"


def test_amazon_2018_plain_without_metadata_keeps_every_review(amazon2018, tmp_path, import_to, histories):
    reviews, _ = amazon2018
    plain = tmp_path / "Gadgets_5.json"
    plain.write_bytes(gzip.decompress(reviews.read_bytes()))
    ds = import_to(plain, "amazon", options=Preprocessing(tie_order="item"))
    assert ds.meta["counts"] == {"users": 2, "items": 4, "interactions": 5}
    assert ds.meta["steps"] == []
    assert ds.items["title"].tolist() == ["B001", "B002", "B003", "B00LOST"]
    assert ds.meta["items_without_title"] == 4
    # tie_order="item": the three reviews A2 wrote at 1472600000 are ordered by item id
    assert histories(ds) == {"A1": ["B003", "B001"], "A2": ["B001", "B002", "B00LOST"]}


def test_amazon_2023_with_gzip_metadata(amazon2023, import_to, histories):
    reviews, meta = amazon2023
    ds = import_to(reviews, "amazon", meta=meta)
    assert ds.meta["source"]["format"] == "amazon:2023"
    assert ds.meta["timestamp_unit"] == "ms"
    assert ds.meta["counts"] == {"users": 2, "items": 2, "interactions": 3}
    assert ds.meta["steps"] == [
        {
            "step": "reviews of items missing from the metadata",
            "rows": 1,
            "users": 0,
            "items": 1,
            "detail": "meta_All_Beauty.jsonl.gz",
        }
    ]
    assert histories(ds) == {"AGU1": ["P2", "P1"], "AGU2": ["P1"]}
    assert ds.interactions["timestamp"].tolist() == [1588615855070, 1588687728923, 1643393630220]
    assert ds.interactions["review_title"].tolist() == ["Not for me", "Lovely", "Okay"]
    assert ds.interactions["review"].tolist() == ["Too sticky.", "Loved the color.", ""]
    items = ds.items.set_index("raw_id")
    assert items.at["P1", "title"] == "Lip Gloss — Rosé"
    assert items.at["P1", "brand"] == "Glossy" and items.at["P2", "brand"] == ""
    assert items.at["P2", "categories"] == "Beauty > Hair"
    assert items.at["P1", "main_category"] == "All Beauty"


def test_amazon_numeric_and_zero_ids_are_ids(tmp_path, import_to):
    (tmp_path / "r.json").write_text(
        '{"user_id": 0, "parent_asin": 7, "timestamp": "1588615855070", "rating": "4"}\n'
        '{"user_id": 12, "parent_asin": 0, "timestamp": 1588615855071}\n'
    )
    ds = import_to(tmp_path / "r.json", "amazon")
    assert ds.users["raw_id"].tolist() == ["0", "12"]
    assert ds.items["raw_id"].tolist() == ["0", "7"]
    assert ds.interactions["timestamp"].tolist() == [1588615855070, 1588615855071]
    rating = ds.interactions["rating"].tolist()
    assert rating[0] == 4.0 and rating[1] != rating[1]  # a review without a rating has NaN


REVIEW = {"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1472688000}


@pytest.mark.parametrize(
    ("second_line", "message"),
    [
        (b'{"reviewerID": "A2", "asin": "B2", "overall": 4.0, "unixReviewTime": }', r"r.json:2: bad JSON"),
        (b'{"reviewerID": "A2", "asin": "B\xff2", "unixReviewTime": 1}', r"r.json:2: bytes not valid utf-8"),
        (b'["A2", "B2"]', r"r.json:2: expected a JSON object per line"),
        (b'{"reviewerID": "A2", "unixReviewTime": 1}', r"r.json:2: record has no asin"),
        (b'{"reviewerID": "A2", "asin": "B2"}', r"r.json:2: record has no unixReviewTime"),
        (
            b'{"reviewerID": "A2", "asin": "B2", "overall": "great", "unixReviewTime": 1}',
            r"r.json:2: rating 'great' is not a number",
        ),
        (
            b'{"reviewerID": "A2", "asin": "B2", "unixReviewTime": "yesterday"}',
            r"r.json:2: timestamp 'yesterday' is not a number",
        ),
        (b'{"reviewerID": "A2", "asin": "B2", "unixReviewTime": NaN}', r"r.json:2: timestamp nan is not a finite"),
        (b'{"reviewerID": "A2", "asin": "B2", "unixReviewTime": 1e30}', r"r.json:2: timestamp 1e\+30 is not a fin"),
    ],
)
def test_amazon_bad_review_lines(tmp_path, second_line, message):
    (tmp_path / "r.json").write_bytes(json.dumps(REVIEW).encode() + b"\n" + second_line + b"\n")
    with pytest.raises(InputError, match=message):
        read_source(tmp_path / "r.json", "amazon")


def test_amazon_unknown_layout_and_empty_files(tmp_path):
    (tmp_path / "r.json").write_text('{"user": "A1", "item": "B1"}\n')
    with pytest.raises(InputError, match=r"r.json:1: record has neither 2018 .* nor 2023"):
        read_source(tmp_path / "r.json", "amazon")
    (tmp_path / "r.json").write_text("\n\n")
    with pytest.raises(InputError, match=r"r.json: file has no JSON lines"):
        read_source(tmp_path / "r.json", "amazon")
    (tmp_path / "r.json").write_text("")
    with pytest.raises(InputError, match=r"r.json: reviews file is empty"):
        read_source(tmp_path / "r.json", "amazon")


def test_amazon_truncated_and_corrupt_gzip(tmp_path):
    data = gzip.compress(("".join(json.dumps({**REVIEW, "asin": f"B{i}"}) + "\n" for i in range(500))).encode())
    (tmp_path / "r.json.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"r.json.gz: cannot decompress .*truncated or corrupt"):
        read_source(tmp_path / "r.json.gz", "amazon")
    corrupt = bytearray(data)
    corrupt[20:60] = bytes(40)
    (tmp_path / "r.json.gz").write_bytes(bytes(corrupt))
    with pytest.raises(InputError, match=r"r.json.gz: cannot decompress"):
        read_source(tmp_path / "r.json.gz", "amazon")


def test_amazon_bad_metadata(amazon2018, tmp_path):
    reviews, meta = amazon2018
    meta.write_text('{"asin": "B001", "title": "ok"}\n{"title": "no id"}\n')
    with pytest.raises(InputError, match=r"meta_Gadgets.json:2: metadata record has no asin"):
        read_source(reviews, "amazon", meta=meta)
    with pytest.raises(InputError, match=r"nope.json: metadata file not found"):
        read_source(reviews, "amazon", meta=tmp_path / "nope.json")


def test_amazon_2014_metadata_with_python_literal_lines(tmp_path, import_to):
    (tmp_path / "reviews_Beauty_5.json").write_text(
        '{"reviewerID": "A1", "asin": "B1", "overall": 5.0, "unixReviewTime": 1400000000, "reviewText": "ok"}\n'
        '{"reviewerID": "A1", "asin": "B2", "overall": 4.0, "unixReviewTime": 1400000100, "reviewText": "fine"}\n'
    )
    (tmp_path / "meta_Beauty.json").write_text(
        "{'asin': 'B1', 'title': \"L'Oreal Paris Lipstick\", 'categories': [['Beauty', 'Makeup', 'Lips']]}\n"
        "{'asin': 'B2', 'title': 'Shampoo', 'categories': [['Beauty', 'Hair Care']]}\n"
    )
    ds = import_to(tmp_path / "reviews_Beauty_5.json", "amazon", meta=tmp_path / "meta_Beauty.json")
    items = ds.items.set_index("raw_id")
    assert items.at["B1", "title"] == "L'Oreal Paris Lipstick"
    assert items.at["B1", "categories"] == "Beauty > Makeup > Lips"
    assert ds.meta["counts"] == {"users": 1, "items": 2, "interactions": 2}
