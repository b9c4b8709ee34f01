import pytest

from llmrec.data.importers import read_source
from llmrec.errors import InputError

# S3-Rec / SASRec text: one user per line, items in time order (repeats allowed)
SEQUENCES = "1 3 5 7\n2 5 3\n10 7 7 1\n"
# the SASRec.pytorch variant: one `user item` pair per line, a user's lines in time order
PAIRS = "1 3\n1 5\n2 5\n1 7\n2 3\n10 7\n10 7\n10 1\n"
TITLES = "1\tToy Story (1995)\n3\tFour Rooms (1995)\n5\tCopycat (1995)\n7\tTwelve Monkeys (1995)\n9\tUnused\n"


@pytest.mark.parametrize("text", [SEQUENCES, PAIRS], ids=["one-line-per-user", "pair-per-line"])
def test_sequences_both_layouts(tmp_path, import_to, histories, text):
    (tmp_path / "ml.txt").write_text(text)
    (tmp_path / "titles.tsv").write_text(TITLES)
    ds = import_to(tmp_path / "ml.txt", "sequences", titles=tmp_path / "titles.tsv")
    assert ds.meta["counts"] == {"users": 3, "items": 4, "interactions": 8}
    assert ds.meta["source"]["format"] == "sequences"
    assert ds.meta["timestamp_unit"] == "index"
    assert histories(ds) == {"1": ["3", "5", "7"], "2": ["5", "3"], "10": ["7", "7", "1"]}
    # positions are the timestamps
    assert ds.interactions["timestamp"].tolist() == [0, 1, 2, 0, 1, 0, 1, 2]
    assert ds.items["raw_id"].tolist() == ["1", "3", "5", "7"]
    assert ds.items["title"].tolist() == [
        "Toy Story (1995)",
        "Four Rooms (1995)",
        "Copycat (1995)",
        "Twelve Monkeys (1995)",
    ]
    assert ds.meta["items_without_title"] == 0
    assert ds.sequences[3].tolist() == [4, 4, 1]


def test_sequences_without_titles_and_with_missing_titles(tmp_path, import_to):
    (tmp_path / "ml.txt").write_text(SEQUENCES)
    ds = import_to(tmp_path / "ml.txt", "sequences")
    assert ds.items["title"].tolist() == ["1", "3", "5", "7"]
    assert ds.meta["items_without_title"] == 4
    (tmp_path / "titles.tsv").write_text("3\tFour Rooms (1995)\n")
    ds = import_to(tmp_path / "ml.txt", "sequences", titles=tmp_path / "titles.tsv")
    assert ds.items["title"].tolist() == ["1", "Four Rooms (1995)", "5", "7"]
    assert ds.meta["items_without_title"] == 3


def test_sequences_tabs_blank_lines_crlf_and_byte_order_mark(tmp_path, import_to, histories):
    (tmp_path / "ml.txt").write_bytes(b"\xef\xbb\xbfa\tx  y\r\n\r\n  \nb z\r\n")
    ds = import_to(tmp_path / "ml.txt", "sequences")
    assert histories(ds) == {"a": ["x", "y"], "b": ["z"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"1 2 3\n4\n", r"ml.txt:2: a line needs a user and at least one item"),
        (b"1 2 3\n2 caf\xe9\n", r"ml.txt:2: bytes not valid utf-8 at column 6"),
        (b"\n \n", r"ml.txt: file has no data lines"),
        (b"", r"ml.txt: sequence file is empty"),
    ],
)
def test_sequences_bad_input(tmp_path, text, message):
    (tmp_path / "ml.txt").write_bytes(text)
    with pytest.raises(InputError, match=message):
        read_source(tmp_path / "ml.txt", "sequences")


def test_sequences_bad_title_file(tmp_path):
    (tmp_path / "ml.txt").write_text(SEQUENCES)
    (tmp_path / "titles.tsv").write_text("1\tToy Story\n3 Four Rooms\n")
    with pytest.raises(InputError, match=r"titles.tsv:2: expected 2 fields .*; write `item<TAB>title`"):
        read_source(tmp_path / "ml.txt", "sequences", titles=tmp_path / "titles.tsv")
    with pytest.raises(InputError, match=r"nope.tsv: title file not found"):
        read_source(tmp_path / "ml.txt", "sequences", titles=tmp_path / "nope.tsv")
