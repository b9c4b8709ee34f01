import pandas as pd
import pytest

from llmrec.data.importers import read_source
from llmrec.data.importers.tabular import parse_column_mapping
from llmrec.errors import InputError, LlmrecError

# A Goodreads-like export: date-string times (one with a UTC offset), quoted review and title with commas,
# u1 reads b2 twice (a repeat, kept), u2's two reads share a timestamp (file order kept).
BOOKS = """\
user,book,stars,read_at,review,book_title
u1,b2,4,2017-03-02 10:00:00,"Slow start, great end",The Name of the Wind
u1,b1,5,2017-03-01T10:00:00Z,,"Hobbit, The"
u2,b3,3,2017-03-05,"Fine","Dune"
u2,b1,2,2017-03-05,"meh",
u1,b2,5,2017-03-03 12:00:00+02:00,"Better the second time",The Name of the Wind
"""
COLUMNS = "user=user,item=book,rating=stars,time=read_at,review=review,title=book_title"


def test_csv_with_date_strings_review_and_title(tmp_path, import_to, histories):
    (tmp_path / "books.csv").write_text(BOOKS)
    ds = import_to(tmp_path / "books.csv", "csv", columns=COLUMNS)
    assert ds.meta["counts"] == {"users": 2, "items": 3, "interactions": 5}
    assert ds.meta["source"]["format"] == "csv"
    assert ds.meta["timestamp_unit"] == "s"
    assert histories(ds) == {"u1": ["b1", "b2", "b2"], "u2": ["b3", "b1"]}
    frame = ds.interactions
    # 2017-03-01T10:00Z, 2017-03-02 10:00 (naive = UTC), 2017-03-03 12:00+02:00 = 10:00Z, 2017-03-05 00:00
    assert frame["timestamp"].tolist() == [1488362400, 1488448800, 1488535200, 1488672000, 1488672000]
    assert frame["rating"].tolist() == [5.0, 4.0, 5.0, 3.0, 2.0]
    assert frame["review"].tolist() == ["", "Slow start, great end", "Better the second time", "Fine", "meh"]
    titles = dict(zip(ds.items["raw_id"], ds.items["title"], strict=True))
    # the first non-empty title of an item wins
    assert titles == {"b1": "Hobbit, The", "b2": "The Name of the Wind", "b3": "Dune"}
    assert ds.meta["items_without_title"] == 0


def test_csv_numeric_times_and_no_time_column(tmp_path, import_to, histories):
    (tmp_path / "log.tsv").write_text("uid\tiid\tts\n7\t1\t30\n7\t2\t10.0\n3\t2\t5\n7\t3\t10\n")
    ds = import_to(tmp_path / "log.tsv", "csv", columns="user=uid, item=iid, time=ts")
    assert histories(ds) == {"3": ["2"], "7": ["2", "3", "1"]}
    assert ds.interactions["timestamp"].tolist() == [5, 10, 10, 30]
    assert "rating" not in ds.interactions
    ds = import_to(tmp_path / "log.tsv", "csv", columns="user=uid,item=iid")
    assert ds.meta["timestamp_unit"] == "index"
    assert histories(ds) == {"3": ["2"], "7": ["1", "2", "3"]}


def test_parquet_with_datetimes_and_numbers(tmp_path, import_to, histories):
    frame = pd.DataFrame(
        {
            "customer": [101, 102, 101, 101],
            "sku": ["x9", "a1", "a1", "x9"],
            "when": pd.to_datetime(["2024-01-02", "2024-01-01", "2024-01-01", "2024-01-03"]),
            "score": [1.0, 0.5, 0.25, 1.0],
            "name": ["X nine", None, "A one", "X nine (again)"],
        }
    )
    frame.to_parquet(tmp_path / "events.parquet")
    columns = "user=customer,item=sku,time=when,rating=score,title=name"
    ds = import_to(tmp_path / "events.parquet", "csv", columns=columns)
    assert ds.meta["counts"] == {"users": 2, "items": 2, "interactions": 4}
    assert histories(ds) == {"101": ["a1", "x9", "x9"], "102": ["a1"]}
    assert ds.interactions["timestamp"].tolist() == [1704067200, 1704153600, 1704240000, 1704067200]
    assert ds.interactions["rating"].tolist() == [0.25, 1.0, 1.0, 0.5]
    assert ds.items["title"].tolist() == ["A one", "X nine"]
    # time-zone-aware datetimes are converted to UTC
    frame["when"] = frame["when"].dt.tz_localize("Europe/Paris")
    frame.to_parquet(tmp_path / "events.parquet")
    ds = import_to(tmp_path / "events.parquet", "csv", columns=columns)
    assert ds.interactions["timestamp"].tolist() == [1704063600, 1704150000, 1704236400, 1704063600]
    # integer epoch seconds
    frame["when"] = [30, 20, 10, 40]
    frame.to_parquet(tmp_path / "events.parquet")
    ds = import_to(tmp_path / "events.parquet", "csv", columns=columns)
    assert histories(ds) == {"101": ["a1", "x9", "x9"], "102": ["a1"]}
    assert ds.interactions["timestamp"].tolist() == [10, 30, 40, 20]


def test_column_mapping_parsing():
    assert parse_column_mapping("user=a , item=b,,rating=r") == {"user": "a", "item": "b", "rating": "r"}
    with pytest.raises(LlmrecError, match=r"--columns: the item column is required"):
        parse_column_mapping("user=a")
    with pytest.raises(LlmrecError, match=r"--columns: cannot read 'stars'"):
        parse_column_mapping("user=a,item=b,stars")
    with pytest.raises(LlmrecError, match=r"--columns: cannot read 'score=s'"):
        parse_column_mapping("user=a,item=b,score=s")


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        (
            BOOKS,
            "user=user,item=isbn,time=when",
            r"books.csv:1: --columns names missing column\(s\) item=isbn, "
            r"time=when; the file has: user, book, stars",
        ),
        (
            "user,book,read_at\nu1,b1,2017-03-01\nu1,b2,someday\n",
            "user=user,item=book,time=read_at",
            r"books.csv:3: time 'someday' is neither a number nor a date",
        ),
        (
            "user,book,stars\nu1,b1,5\nu1,b2,five\n",
            "user=user,item=book,rating=stars",
            r"books.csv:3: rating 'five' is not a number",
        ),
        ("user,book\nu1,b1\n,b2\n", "user=user,item=book", r"books.csv:3: empty user id"),
        ("user,book\nu1,b1\nu2,b2,extra\n", "user=user,item=book", r"books.csv:3: expected 2 fields .*found 3"),
        ("user,book\n", "user=user,item=book", r"books.csv: file has no data lines"),
        ("user,user\nu1,u2\n", "user=user,item=user", r"books.csv:1: header names 'user' more than once"),
    ],
)
def test_csv_bad_input(tmp_path, text, columns, message):
    (tmp_path / "books.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        read_source(tmp_path / "books.csv", "csv", columns=columns)


def test_parquet_bad_input(tmp_path):
    pd.DataFrame({"u": [1, 2], "i": [1, 2], "t": [1.0, None]}).to_parquet(tmp_path / "e.parquet")
    with pytest.raises(InputError, match=r"e.parquet:2: t is missing"):
        read_source(tmp_path / "e.parquet", "csv", columns="user=u,item=i,time=t")
    with pytest.raises(InputError, match=r"e.parquet: --columns names missing column\(s\) item=j"):
        read_source(tmp_path / "e.parquet", "csv", columns="user=u,item=j")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match=r"bad.parquet: cannot read Parquet"):
        read_source(tmp_path / "bad.parquet", "csv", columns="user=u,item=i")


def test_csv_needs_columns_and_other_formats_refuse_them(tmp_path, ml1m_dir):
    (tmp_path / "books.csv").write_text(BOOKS)
    with pytest.raises(LlmrecError, match=r"--format csv needs --columns"):
        read_source(tmp_path / "books.csv", "csv")
    with pytest.raises(LlmrecError, match=r"--columns does not apply to --format movielens"):
        read_source(ml1m_dir, "movielens", columns="user=a,item=b")
    with pytest.raises(LlmrecError, match=r"--meta does not apply to --format csv"):
        read_source(tmp_path / "books.csv", "csv", columns=COLUMNS, meta=tmp_path / "m.json")


def test_integer_times_beyond_float_precision_stay_exact(tmp_path, import_to, histories):
    (tmp_path / "ns.csv").write_text("u,i,t\nu1,b,1588687728923000001\nu1,a,1588687728923000000\n")
    ds = import_to(tmp_path / "ns.csv", "csv", columns="user=u,item=i,time=t")
    assert histories(ds) == {"u1": ["a", "b"]}
    assert ds.interactions["timestamp"].tolist() == [1588687728923000000, 1588687728923000001]
