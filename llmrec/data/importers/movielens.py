"""MovieLens in its three published layouts, detected from the files present in the source directory.

- ML-100K: ``u.data`` (tab-separated user, item, rating, timestamp), ``u.item`` (``|``-separated, latin-1),
  optional ``u.user`` and ``u.genre``.
- ML-1M / ML-10M: ``ratings.dat`` and ``movies.dat`` (``::``-separated, latin-1 or UTF-8), optional ``users.dat``
  (ML-1M) and ``tags.dat`` (ML-10M, kept as review-like text).
- ml-latest / ml-latest-small: ``ratings.csv`` and ``movies.csv`` (with header, quoted, UTF-8), optional
  ``tags.csv`` (kept as review-like text).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llmrec.data.dataset import ImportStep, RawData
from llmrec.data.readers import parse_numbers, read_delimited, require_file, utf8_or_latin1
from llmrec.errors import InputError

# The genre order of ML-100K's 19 flag columns, used when the source has no u.genre file.
ML100K_GENRES = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
]


def _ratings(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user": frame["user"].astype(str).str.strip(),
            "item": frame["item"].astype(str).str.strip(),
            "timestamp": parse_numbers(frame, "timestamp", path, "timestamp", integer=True),
            "rating": parse_numbers(frame, "rating", path, "rating", integer=False),
        }
    )


def _keep_known_items(raw: RawData, path: Path) -> None:
    known = raw.items["raw_id"].to_numpy()
    raw.drop_rows(
        raw.interactions["item"].isin(known).to_numpy(), "ratings of items missing from the movies file", path.name
    )


def _attach_tags(raw: RawData, tags: pd.DataFrame, path: Path) -> None:
    """Join each user's tags on a movie into ``review`` of that user's ratings of the movie."""
    tags = pd.DataFrame({"user": tags["user"].str.strip(), "item": tags["item"].str.strip(), "tag": tags["tag"]})
    joined = tags.groupby(["user", "item"], sort=False)["tag"].agg(lambda values: "; ".join(values)).rename("review")
    merged = raw.interactions.join(joined, on=["user", "item"])
    matched = pd.MultiIndex.from_frame(raw.interactions[["user", "item"]].drop_duplicates())
    orphan = ~pd.MultiIndex.from_frame(tags[["user", "item"]]).isin(matched)
    if orphan.any():
        raw.steps.append(
            ImportStep("tags without a matching rating (not imported)", rows=int(orphan.sum()), detail=f"{path.name}")
        )
    merged["review"] = merged["review"].fillna("")
    raw.interactions = merged


def _ml100k(src: Path) -> RawData:
    data = require_file(src / "u.data", "ratings file u.data")
    frame = read_delimited(data, ["user", "item", "rating", "timestamp"], "\t", header=False)
    raw = RawData(_ratings(frame, data), source_format="movielens:ml-100k")
    genres = ML100K_GENRES
    if (src / "u.genre").exists():
        listed = read_delimited(src / "u.genre", ["genre", "index"], "|", header=False, encoding="latin-1")
        genres = listed["genre"].tolist()
    columns = ["raw_id", "title", "release_date", "video_release_date", "url"] + [f"g{i}" for i in range(len(genres))]
    item_file = require_file(src / "u.item", "movies file u.item")
    items = read_delimited(item_file, columns, "|", header=False, encoding="latin-1")
    flags = items[[f"g{i}" for i in range(len(genres))]].to_numpy() == "1"
    raw.items = pd.DataFrame(
        {
            "raw_id": items["raw_id"].str.strip(),
            "title": items["title"].str.strip(),
            "release_date": items["release_date"],
            "genres": ["|".join(g for g, on in zip(genres, row, strict=True) if on) for row in flags],
        }
    )
    if (src / "u.user").exists():
        users = read_delimited(
            src / "u.user",
            ["raw_id", "age", "gender", "occupation", "zip_code"],
            "|",
            header=False,
            encoding="latin-1",
        )
        raw.users = users.drop(columns="_line")
    _keep_known_items(raw, item_file)
    return raw


def _ml_dat(src: Path) -> RawData:
    data = require_file(src / "ratings.dat", "ratings file ratings.dat")
    frame = read_delimited(data, ["user", "item", "rating", "timestamp"], "::", header=False, encoding="latin-1")
    raw = RawData(_ratings(frame, data), source_format="movielens:dat")
    item_file = require_file(src / "movies.dat", "movies file movies.dat")
    items = read_delimited(
        item_file, ["raw_id", "title", "genres"], "::", header=False, encoding=utf8_or_latin1(item_file)
    )
    raw.items = pd.DataFrame(
        {"raw_id": items["raw_id"].str.strip(), "title": items["title"], "genres": items["genres"]}
    )
    if (src / "users.dat").exists():
        users = read_delimited(
            src / "users.dat",
            ["raw_id", "gender", "age", "occupation", "zip_code"],
            "::",
            header=False,
            encoding="latin-1",
        )
        raw.users = users.drop(columns="_line")
    _keep_known_items(raw, item_file)
    if (src / "tags.dat").exists():
        tags = read_delimited(
            src / "tags.dat",
            ["user", "item", "tag", "timestamp"],
            "::",
            header=False,
            encoding=utf8_or_latin1(src / "tags.dat"),
        )
        _attach_tags(raw, tags, src / "tags.dat")
    return raw


def _ml_csv(src: Path) -> RawData:
    data = require_file(src / "ratings.csv", "ratings file ratings.csv")
    frame = read_delimited(data, None, ",", header=True, quoted=True)
    _require_columns(frame, ["userId", "movieId", "rating", "timestamp"], data)
    frame = frame.rename(columns={"userId": "user", "movieId": "item"})
    raw = RawData(_ratings(frame, data), source_format="movielens:csv")
    item_file = require_file(src / "movies.csv", "movies file movies.csv")
    items = read_delimited(item_file, None, ",", header=True, quoted=True)
    _require_columns(items, ["movieId", "title", "genres"], item_file)
    raw.items = pd.DataFrame(
        {"raw_id": items["movieId"].str.strip(), "title": items["title"], "genres": items["genres"]}
    )
    _keep_known_items(raw, item_file)
    if (src / "tags.csv").exists():
        tags = read_delimited(src / "tags.csv", None, ",", header=True, quoted=True)
        _require_columns(tags, ["userId", "movieId", "tag"], src / "tags.csv")
        _attach_tags(raw, tags.rename(columns={"userId": "user", "movieId": "item"}), src / "tags.csv")
    return raw


def _require_columns(frame: pd.DataFrame, names: list[str], path: Path) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InputError(
            path, f"header lacks column(s) {', '.join(missing)}", f"the header must name {', '.join(names)}", line=1
        )


def import_movielens(src: Path) -> RawData:
    """Read a MovieLens directory (ML-100K, ML-1M/10M or ml-latest layout, detected from its files)."""
    src = Path(src)
    if src.is_file():
        src = src.parent
    if not src.is_dir():
        raise InputError(src, "MovieLens source directory not found", "pass the unzipped MovieLens directory")
    if (src / "u.data").exists():
        return _ml100k(src)
    if (src / "ratings.dat").exists():
        return _ml_dat(src)
    if (src / "ratings.csv").exists():
        return _ml_csv(src)
    raise InputError(
        src,
        "no MovieLens ratings file (u.data, ratings.dat or ratings.csv)",
        "pass the unzipped MovieLens directory, or choose another --format",
    )


__all__ = ["import_movielens", "ML100K_GENRES"]
