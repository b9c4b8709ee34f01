import gzip

import numpy as np
import pytest

from llmrec.data import readers
from llmrec.data.readers import iter_lines, parse_numbers, read_delimited, read_json_lines, require_file
from llmrec.errors import InputError


def test_lines_plain_gzip_crlf_and_final_line_without_newline(tmp_path):
    text = "a,b\r\nc,d\n\ne,f"
    (tmp_path / "x.csv").write_bytes(text.encode())
    (tmp_path / "x.csv.gz").write_bytes(gzip.compress(text.encode()))
    # gzip is detected from the magic bytes, whatever the name
    (tmp_path / "x.dat").write_bytes(gzip.compress(text.encode()))
    expected = [(1, "a,b"), (2, "c,d"), (3, ""), (4, "e,f")]
    for name in ("x.csv", "x.csv.gz", "x.dat"):
        assert list(iter_lines(tmp_path / name)) == expected


def test_byte_order_mark_is_dropped_only_at_the_start_of_utf8(tmp_path):
    (tmp_path / "x.txt").write_bytes(b"\xef\xbb\xbfid\n\xef\xbb\xbfnext\n")
    assert list(iter_lines(tmp_path / "x.txt")) == [(1, "id"), (2, "\ufeffnext")]
    assert next(iter_lines(tmp_path / "x.txt", "latin-1"))[1] == "ï»¿id"


def test_read_delimited_multi_char_separator_and_line_numbers(tmp_path):
    (tmp_path / "r.dat").write_text("1::10::5\n\n2::20::3\n")
    frame = read_delimited(tmp_path / "r.dat", ["u", "i", "r"], "::", header=False)
    assert frame[["u", "i", "r"]].values.tolist() == [["1", "10", "5"], ["2", "20", "3"]]
    assert frame["_line"].tolist() == [1, 3]


def test_read_delimited_quotes_and_optional_trailing_fields(tmp_path):
    (tmp_path / "m.csv").write_text('id,title,genres\n1,"Heat, The",Drama\n2,"Say ""Hi""",\n3,Solo\n')
    frame = read_delimited(tmp_path / "m.csv", None, ",", header=True, quoted=True, min_fields=2)
    assert frame["title"].tolist() == ["Heat, The", 'Say "Hi"', "Solo"]
    assert frame["genres"].tolist() == ["Drama", "", ""]
    with pytest.raises(InputError, match=r"m.csv:4: expected 3 fields separated by ',', found 2"):
        read_delimited(tmp_path / "m.csv", None, ",", header=True, quoted=True)


def test_read_delimited_in_chunks_keeps_every_row_and_line(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_ROWS_PER_FRAME", 2)
    (tmp_path / "r.tsv").write_text("".join(f"{i}\t{i * 10}\n" for i in range(7)))
    frame = read_delimited(tmp_path / "r.tsv", ["a", "b"], "\t", header=False)
    assert frame["b"].tolist() == [str(i * 10) for i in range(7)]
    assert frame["_line"].tolist() == list(range(1, 8))


def test_parse_numbers(tmp_path):
    (tmp_path / "r.dat").write_text("a 1588687728923 4.5\nb 2 3\nc 3.0 x\n")
    frame = read_delimited(tmp_path / "r.dat", ["id", "t", "r"], " ", header=False)
    times = parse_numbers(frame.iloc[:2], "t", tmp_path / "r.dat", "timestamp", integer=True)
    assert times.dtype == np.int64 and times.tolist() == [1588687728923, 2]
    assert parse_numbers(frame, "t", tmp_path / "r.dat", "timestamp", integer=True).tolist()[2] == 3
    with pytest.raises(InputError, match=r"r.dat:3: rating 'x' is not a number"):
        parse_numbers(frame, "r", tmp_path / "r.dat", "rating", integer=False)
    (tmp_path / "s.dat").write_text("1.5\n")
    frame = read_delimited(tmp_path / "s.dat", ["t"], " ", header=False)
    with pytest.raises(InputError, match=r"s.dat:1: timestamp '1.5' is not an integer"):
        parse_numbers(frame, "t", tmp_path / "s.dat", "timestamp", integer=True)


def test_json_lines_skip_blank_lines(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}\n\n{"a": 2}\n')
    assert list(read_json_lines(tmp_path / "x.json")) == [(1, {"a": 1}), (3, {"a": 2})]


def test_require_file(tmp_path):
    with pytest.raises(InputError, match=r"nope: data not found; check the path"):
        require_file(tmp_path / "nope", "data")
    with pytest.raises(InputError, match=r": data is not a file; pass the file itself"):
        require_file(tmp_path, "data")
    (tmp_path / "e").write_bytes(b"")
    with pytest.raises(InputError, match=r"e: data is empty"):
        require_file(tmp_path / "e", "data")


def test_header_is_the_first_non_blank_line(tmp_path):
    (tmp_path / "x.csv").write_text("\n \nu,i\n1,2\n")
    frame = read_delimited(tmp_path / "x.csv", None, ",", header=True, quoted=True)
    assert frame[["u", "i"]].values.tolist() == [["1", "2"]] and frame["_line"].tolist() == [4]
    (tmp_path / "x.csv").write_text("\n\n")
    with pytest.raises(InputError, match=r"x.csv: file has no header line"):
        read_delimited(tmp_path / "x.csv", None, ",", header=True, quoted=True)
