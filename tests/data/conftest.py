"""Small but faithful copies of each source format the importers read, written into the test's tmp_path.

Each fixture returns the path an importer takes (a directory for MovieLens and RecBole, a file otherwise) and
documents the exact content, so tests can state expected counts, ids and orders by hand.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmrec.data.dataset import Dataset
from llmrec.data.importers import import_dataset


def write_json_lines(path: Path, records: list[dict[str, Any]], *, gz: bool = False) -> Path:
    text = "".join(json.dumps(record) + "\n" for record in records).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


@pytest.fixture
def import_to(tmp_path: Path) -> Callable[..., Dataset]:
    """``import_to(src, fmt, **kw)``: import into a fresh ``tmp_path/out-N`` directory, quietly."""
    counter = iter(range(1000))

    def run(src: Path, fmt: str, **kwargs: Any) -> Dataset:
        kwargs.setdefault("quiet", True)
        out = kwargs.pop("out", None) or tmp_path / f"out-{next(counter)}"
        return import_dataset(src, fmt, out, **kwargs)

    return run


# ML-1M: user 1's lines are out of time order and 3408/1193 tie at 978300760 (3408 first in the file);
# user 2's 3068/1193 tie at 978299000; user 10 rates 661 twice (a repeat); movie 73 has a latin-1 title;
# movie 2858 is listed but never rated.
ML1M_RATINGS = """\
1::3408::4::978300760
1::661::3::978302109
1::1193::5::978300760
1::914::3::978301968
2::1357::5::978298709
2::3068::4::978299000
2::1193::4::978299000
2::73::5::978300000
10::661::2::978226000
10::661::4::978226100
"""
ML1M_MOVIES = """\
73::Misérables, Les (1995)::Drama|Musical
661::James and the Giant Peach (1996)::Animation|Children's|Musical
914::My Fair Lady (1964)::Musical|Romance
1193::One Flew Over the Cuckoo's Nest (1975)::Drama
1357::Shine (1996)::Drama|Romance
2858::American Beauty (1999)::Comedy|Drama
3068::Verdict, The (1982)::Drama
3408::Erin Brockovich (2000)::Drama
"""
ML1M_USERS = "1::F::1::10::48067\n2::M::56::16::70072\n10::F::35::1::95370\n"


@pytest.fixture
def ml1m_dir(tmp_path: Path) -> Path:
    src = tmp_path / "ml-1m"
    src.mkdir()
    (src / "ratings.dat").write_text(ML1M_RATINGS, encoding="latin-1")
    (src / "movies.dat").write_text(ML1M_MOVIES, encoding="latin-1")
    (src / "users.dat").write_text(ML1M_USERS, encoding="latin-1")
    return src


# ml-latest-small: quoted titles with commas, a UTF-8 accented title, a repeated rating of movie 1 by user 1,
# two tags on one rating (one quoted with a comma) and a tag by user 7 who rated nothing (not imported).
ML_LATEST_RATINGS = """\
userId,movieId,rating,timestamp
1,1,4.0,964982703
1,3,4.0,964981247
1,6,4.0,964982224
1,1,5.0,964983000
2,318,3.0,1445714835
2,29,4.5,1445715029
"""
ML_LATEST_MOVIES = """\
movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
3,Grumpier Old Men (1995),Comedy|Romance
6,Heat (1995),Action|Crime|Thriller
29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama|Fantasy|Mystery|Sci-Fi
318,"Shawshank Redemption, The (1994)",Crime|Drama
"""
ML_LATEST_TAGS = """\
userId,movieId,tag,timestamp
2,318,inspirational,1445714996
2,318,"prison, escape",1445714997
7,1,pixar,1169687325
"""


@pytest.fixture
def ml_latest_dir(tmp_path: Path) -> Path:
    src = tmp_path / "ml-latest-small"
    src.mkdir()
    (src / "ratings.csv").write_text(ML_LATEST_RATINGS, encoding="utf-8")
    (src / "movies.csv").write_text(ML_LATEST_MOVIES, encoding="utf-8")
    (src / "tags.csv").write_text(ML_LATEST_TAGS, encoding="utf-8")
    return src


def _u_item(raw_id: int, title: str, date: str, genres: set[int]) -> str:
    flags = "|".join("1" if i in genres else "0" for i in range(19))
    return f"{raw_id}|{title}|{date}||http://us.imdb.com/M/title-exact?{raw_id}|{flags}"


# ML-100K: tab-separated u.data (user 196 rates 242 and 51 at the same second, 242 first), 24-field latin-1
# u.item (genre flags in ML100K_GENRES order), u.user.
ML100K_DATA = """\
196\t242\t3\t881250949
186\t302\t3\t891717742
22\t377\t1\t878887116
196\t51\t2\t881250949
186\t346\t1\t884182806
22\t1291\t4\t878887000
"""
ML100K_ITEMS = (
    "\n".join(
        [
            _u_item(51, "Legends of the Fall (1994)", "01-Jan-1994", {8, 14, 17, 18}),
            _u_item(242, "Kolya (1996)", "24-Jan-1997", {5}),
            _u_item(302, "L.A. Confidential (1997)", "01-Jan-1997", {6, 10, 13, 16}),
            _u_item(346, "Jackie Brown (1997)", "01-Jan-1997", {6, 8}),
            _u_item(377, "Heavyweights (1994)", "01-Jan-1994", {4, 5}),
            _u_item(1291, "Célestial Clockwork (1994)", "01-Jan-1994", {5}),
        ]
    )
    + "\n"
)
ML100K_USERS = "22|25|M|writer|40206\n186|39|F|executive|00000\n196|49|M|writer|55105\n"


@pytest.fixture
def ml100k_dir(tmp_path: Path) -> Path:
    src = tmp_path / "ml-100k"
    src.mkdir()
    (src / "u.data").write_text(ML100K_DATA)
    (src / "u.item").write_bytes(ML100K_ITEMS.encode("latin-1"))
    (src / "u.user").write_text(ML100K_USERS)
    return src


# RecBole atomic files (as RecBole ships ml-100k): item 999 is not in mini.item (dropped and reported);
# item 302 has an empty price.
RECBOLE_INTER = """\
user_id:token\titem_id:token\trating:float\ttimestamp:float
196\t242\t3\t881250949
186\t302\t3\t891717742
196\t377\t1\t881250949
22\t999\t4\t878887116
22\t242\t5\t878887000
"""
RECBOLE_ITEM = """\
item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tprice:float
242\tKolya\t1996\tComedy\t9.5
302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery Thriller\t
377\tHeavyweights\t1994\tChildren Comedy\t3
"""
RECBOLE_USER = """\
user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token
22\t25\tM\twriter\t40206
186\t39\tF\texecutive\t00000
196\t49\tM\twriter\t55105
"""


@pytest.fixture
def recbole_dir(tmp_path: Path) -> Path:
    src = tmp_path / "mini"
    src.mkdir()
    (src / "mini.inter").write_text(RECBOLE_INTER)
    (src / "mini.item").write_text(RECBOLE_ITEM)
    (src / "mini.user").write_text(RECBOLE_USER)
    return src


# Amazon Reviews 2018 (5-core layout): B00LOST is missing from the metadata; A2 rated two items at one second.
AMAZON_2018 = [
    {
        "overall": 5.0,
        "verified": True,
        "reviewTime": "09 1, 2016",
        "reviewerID": "A1",
        "asin": "B001",
        "reviewerName": "Ann",
        "reviewText": "Works great, sturdy.",
        "summary": "Five Stars",
        "unixReviewTime": 1472688000,
    },
    {
        "overall": 3.0,
        "verified": False,
        "reviewerID": "A2",
        "asin": "B002",
        "summary": "Meh",
        "unixReviewTime": 1472600000,
    },
    {
        "overall": 4.0,
        "reviewerID": "A1",
        "asin": "B003",
        "reviewText": "ok",
        "summary": "Fine",
        "unixReviewTime": 1472000000,
    },
    {
        "overall": 2.0,
        "reviewerID": "A2",
        "asin": "B00LOST",
        "reviewText": "lost",
        "summary": "x",
        "unixReviewTime": 1472600000,
    },
    {
        "overall": 1.0,
        "reviewerID": "A2",
        "asin": "B001",
        "reviewText": "broke",
        "summary": "One Star",
        "unixReviewTime": 1472600000,
    },
]
AMAZON_2018_META = [
    {"asin": "B001", "title": "Acme Widget", "category": ["Home & Kitchen", "Gadgets"], "brand": "Acme"},
    {"asin": "B002", "title": "Gizmo Pro", "categories": [["Electronics", "Accessories"]], "brand": "Giz"},
    {"asin": "B003", "title": "", "category": [], "brand": ""},
    {"asin": "B001", "title": "Acme Widget (duplicate record)"},
    {"asin": "B999", "title": "Never reviewed"},
]

# Amazon Reviews 2023: millisecond timestamps, items keyed by parent_asin; P3 is missing from the metadata.
AMAZON_2023 = [
    {
        "rating": 5.0,
        "title": "Lovely",
        "text": "Loved the color.",
        "images": [],
        "asin": "B0A",
        "parent_asin": "P1",
        "user_id": "AGU1",
        "timestamp": 1588687728923,
        "helpful_vote": 2,
        "verified_purchase": True,
    },
    {
        "rating": 2.0,
        "title": "Not for me",
        "text": "Too sticky.",
        "images": [],
        "asin": "B0B",
        "parent_asin": "P2",
        "user_id": "AGU1",
        "timestamp": 1588615855070,
        "helpful_vote": 0,
        "verified_purchase": True,
    },
    {
        "rating": 4.0,
        "title": "Good",
        "text": "Nice",
        "images": [],
        "asin": "B0C",
        "parent_asin": "P3",
        "user_id": "AGU2",
        "timestamp": 1589665266052,
        "helpful_vote": 0,
        "verified_purchase": False,
    },
    {
        "rating": 3.0,
        "title": "Okay",
        "text": "",
        "images": [],
        "asin": "B0D",
        "parent_asin": "P1",
        "user_id": "AGU2",
        "timestamp": 1643393630220,
        "helpful_vote": 1,
        "verified_purchase": True,
    },
]
AMAZON_2023_META = [
    {
        "main_category": "All Beauty",
        "title": "Lip Gloss — Rosé",
        "average_rating": 4.2,
        "parent_asin": "P1",
        "store": "Glossy",
        "categories": [],
        "features": [],
        "details": {},
    },
    {
        "main_category": "All Beauty",
        "title": "Hair Clips",
        "parent_asin": "P2",
        "store": None,
        "categories": ["Beauty", "Hair"],
    },
]


@pytest.fixture
def amazon2018(tmp_path: Path) -> tuple[Path, Path]:
    """(reviews .json.gz, metadata .json) in the 2018 layout."""
    reviews = write_json_lines(tmp_path / "Gadgets_5.json.gz", AMAZON_2018, gz=True)
    meta = write_json_lines(tmp_path / "meta_Gadgets.json", AMAZON_2018_META)
    return reviews, meta


@pytest.fixture
def amazon2023(tmp_path: Path) -> tuple[Path, Path]:
    """(reviews .jsonl, metadata .jsonl.gz) in the 2023 layout."""
    reviews = write_json_lines(tmp_path / "All_Beauty.jsonl", AMAZON_2023)
    meta = write_json_lines(tmp_path / "meta_All_Beauty.jsonl.gz", AMAZON_2023_META, gz=True)
    return reviews, meta


def raw_histories(dataset: Dataset) -> dict[str, list[str]]:
    """Each user's items in stored order, both as raw ids (what the source file said)."""
    users = dict(zip(dataset.users["user_id"], dataset.users["raw_id"], strict=True))
    items = dict(zip(dataset.items["item_id"], dataset.items["raw_id"], strict=True))
    frame = dataset.interactions
    out: dict[str, list[str]] = {}
    for user, item in zip(frame["user_id"], frame["item_id"], strict=True):
        out.setdefault(users[user], []).append(items[item])
    return out


@pytest.fixture
def histories() -> Callable[[Dataset], dict[str, list[str]]]:
    """``histories(dataset)``: raw user id -> raw item ids in stored (time) order."""
    return raw_histories
