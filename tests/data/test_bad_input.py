"""Bad input, through the library and through the CLI: one clear line naming file and line, nothing written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmrec.cli import main
from llmrec.data.importers import import_dataset
from llmrec.errors import LlmrecError

ML1M = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298709\n"
MOVIES = "661::James and the Giant Peach (1996)::Animation\n1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
RATINGS_CSV = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.0,964981247\n"
MOVIES_CSV = "movieId,title,genres\n1,Toy Story (1995),Animation\n3,Grumpier Old Men (1995),Comedy\n"
U_ITEM = "242|Kolya (1996)|24-Jan-1997||http://x|" + "|".join("0" * 19) + "\n"


@dataclass
class Case:
    """A source written by ``files`` (relative path -> bytes) and the import that must fail with ``message``."""

    files: dict[str, bytes]
    src: str
    fmt: str
    message: str
    options: dict[str, str] = field(default_factory=dict)


CASES = {
    "missing-file": Case({}, "Books_5.json", "amazon", r"Books_5.json: reviews file not found; check the path"),
    "missing-movielens-dir": Case({}, "ml-1m", "movielens", r"ml-1m: MovieLens source directory not found"),
    "missing-movies-file": Case(
        {"ml-1m/ratings.dat": ML1M.encode()}, "ml-1m", "movielens", r"movies.dat: movies file movies.dat not found"
    ),
    "unknown-format": Case(
        {"ml-1m/ratings.dat": ML1M.encode()},
        "ml-1m",
        "movielen",
        r"--format 'movielen' is not a known format; choose one of movielens, recbole",
    ),
    "wrong-field-count": Case(
        {
            "ml-1m/ratings.dat": b"1::1193::5::978300760\n1::661::3::978302109\n2::1193::4\n",
            "ml-1m/movies.dat": MOVIES.encode("latin-1"),
        },
        "ml-1m",
        "movielens",
        r"ml-1m/ratings.dat:3: expected 4 fields separated by '::', found 3",
    ),
    "u-item-field-count": Case(
        {
            "ml-100k/u.data": b"196\t242\t3\t881250949\n",
            "ml-100k/u.item": (U_ITEM + "302|L.A. Confidential|x\n").encode(),
        },
        "ml-100k",
        "movielens",
        r"ml-100k/u.item:2: expected 24 fields separated by '\|', found 3",
    ),
    "non-numeric-rating": Case(
        {"ml-100k/u.data": b"196\t242\t3\t881250949\n186\t242\tthree\t891717742\n", "ml-100k/u.item": U_ITEM.encode()},
        "ml-100k",
        "movielens",
        r"ml-100k/u.data:2: rating 'three' is not a number",
    ),
    "non-numeric-timestamp": Case(
        {"ml/ratings.csv": (RATINGS_CSV + "2,1,3.5,soon\n").encode(), "ml/movies.csv": MOVIES_CSV.encode()},
        "ml",
        "movielens",
        r"ml/ratings.csv:4: timestamp 'soon' is not an integer",
    ),
    "fractional-timestamp": Case(
        {"ml-1m/ratings.dat": b"1::1193::5::978300760.5\n", "ml-1m/movies.dat": MOVIES.encode()},
        "ml-1m",
        "movielens",
        r"ml-1m/ratings.dat:1: timestamp '978300760.5' is not an integer",
    ),
    "bad-json": Case(
        {"r.json": b'{"reviewerID": "A1", "asin": "B1", "overall": 5, "unixReviewTime": 1}\n{"reviewerID": "A2",\n'},
        "r.json",
        "amazon",
        r"r.json:2: bad JSON \(.* at column 21\); fix or remove the line",
    ),
    "bad-utf8-json": Case(
        {
            "r.json": b'{"reviewerID": "A1", "asin": "B1", "overall": 5, "unixReviewTime": 1}\n'
            b'{"reviewerID": "A2", "asin": "B1", "reviewText": "caf\xe9", "unixReviewTime": 1}\n'
        },
        "r.json",
        "amazon",
        r"r.json:2: bytes not valid utf-8 at column 54 \(invalid continuation byte\)",
    ),
    "bad-utf8-csv": Case(
        {
            "ml/ratings.csv": RATINGS_CSV.encode(),
            "ml/movies.csv": (MOVIES_CSV + '29,"Cité des enfants perdus, La (1995)",Drama\n').encode("latin-1"),
        },
        "ml",
        "movielens",
        r"ml/movies.csv:4: bytes not valid utf-8 at column 8 \(invalid continuation byte\); re-save the file as utf-8",
    ),
    "empty-file": Case(
        {"ml-1m/ratings.dat": b"", "ml-1m/movies.dat": MOVIES.encode()},
        "ml-1m",
        "movielens",
        r"ml-1m/ratings.dat: ratings file ratings.dat is empty; pass a file with data",
    ),
    "header-only": Case(
        {"ml/ratings.csv": b"userId,movieId,rating,timestamp\n", "ml/movies.csv": MOVIES_CSV.encode()},
        "ml",
        "movielens",
        r"ml/ratings.csv: file has no data lines",
    ),
    "missing-mapped-column": Case(
        {"books.csv": b"user,book,stars\nu1,b1,5\n"},
        "books.csv",
        "csv",
        r"books.csv:1: --columns names missing column\(s\) rating=rating; the file has: user, book, stars",
        {"columns": "user=user,item=book,rating=rating"},
    ),
    "bad-date": Case(
        {"books.csv": b"user,book,read_at\nu1,b1,2017-03-01\nu1,b2,2017-13-45\n"},
        "books.csv",
        "csv",
        r"books.csv:3: time '2017-13-45' is neither a number nor a date",
        {"columns": "user=user,item=book,time=read_at"},
    ),
    "recbole-untyped-header": Case(
        {"x.inter": b"user_id:token\titem_id\n1\t2\n"},
        "x.inter",
        "recbole",
        r"x.inter:1: header field 'item_id' is not NAME:TYPE",
    ),
}


def _write(case: Case, root: Path) -> tuple[Path, dict[str, str]]:
    for name, data in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root / case.src, dict(case.options)


def _leftovers(parent: Path, name: str) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def _cli_args(case: Case, src: Path, out: Path) -> list[str]:
    args = ["data", "import", str(src), "--format", case.fmt, "--out", str(out)]
    for key, value in case.options.items():
        args += [f"--{key}", value]
    return args


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str, str]:
    """Run ``llmrec`` in-process exactly as the console script does; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["llmrec", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr()
    return stop.value.code or 0, captured.out, captured.err


def _assert_one_line_error(code: int, err: str, message: str) -> None:
    assert code == 1
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("llmrec: error: ")
    assert "Traceback" not in err
    assert re.search(message, err), err


@pytest.mark.parametrize("name", list(CASES))
def test_library_raises_with_file_and_line(tmp_path, name):
    case = CASES[name]
    src, options = _write(case, tmp_path)
    out = tmp_path / "datasets" / "out"
    with pytest.raises(LlmrecError, match=case.message) as info:
        import_dataset(src, case.fmt, out, quiet=True, **options)
    assert "\n" not in str(info.value)
    assert not out.exists() and not out.parent.exists()


@pytest.mark.parametrize("name", list(CASES))
def test_cli_prints_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, name):
    case = CASES[name]
    src, _ = _write(case, tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run_main(monkeypatch, capsys, _cli_args(case, src, out))
    _assert_one_line_error(code, err, case.message)
    assert stdout == ""
    assert not out.exists()
    assert _leftovers(tmp_path, "out") == []


@pytest.mark.parametrize("name", ["wrong-field-count", "bad-utf8-json", "unknown-format"])
def test_cli_subprocess(tmp_path, name):
    """The real console entry point: exit code, one stderr line, no traceback, no output directory."""
    case = CASES[name]
    src, _ = _write(case, tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "LLMREC_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-m", "llmrec", *_cli_args(case, src, out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    _assert_one_line_error(result.returncode, result.stderr, case.message)
    assert not out.exists() and _leftovers(tmp_path, "out") == []


def _ml(root: Path, ratings: str = ML1M) -> Path:
    src = root / "ml-1m"
    src.mkdir(exist_ok=True)
    (src / "ratings.dat").write_text(ratings)
    (src / "movies.dat").write_text(MOVIES, encoding="latin-1")
    return src


def test_existing_out_needs_force_and_force_replaces_it(tmp_path, monkeypatch, capsys):
    src = _ml(tmp_path)
    out = tmp_path / "out"
    code, stdout, _ = run_main(monkeypatch, capsys, ["data", "import", str(src), "-f", "movielens", "-o", str(out)])
    assert code == 0 and "imported 3 interactions of 2 users on 2 items" in stdout
    before = (out / "meta.json").read_text()

    code, _, err = run_main(monkeypatch, capsys, ["data", "import", str(src), "-f", "movielens", "-o", str(out)])
    _assert_one_line_error(code, err, rf"{out}: already exists; pass --force to overwrite it")
    assert (out / "meta.json").read_text() == before

    (src / "ratings.dat").write_text(ML1M + "3::661::1::978300000\n")
    args = ["data", "import", str(src), "-f", "movielens", "-o", str(out), "--force", "--json"]
    code, stdout, _ = run_main(monkeypatch, capsys, args)
    assert code == 0
    assert json.loads(stdout.strip().splitlines()[-1])["interactions"] == 4
    assert json.loads((out / "meta.json").read_text())["counts"] == {"users": 3, "items": 2, "interactions": 4}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-1m", "out"]


def test_failed_forced_import_keeps_the_old_dataset(tmp_path, monkeypatch, capsys):
    src = _ml(tmp_path)
    out = tmp_path / "out"
    import_dataset(src, "movielens", out, quiet=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (src / "ratings.dat").write_text(ML1M + "3::661::bad::978300000\n")
    code, _, err = run_main(
        monkeypatch, capsys, ["data", "import", str(src), "-f", "movielens", "-o", str(out), "--force"]
    )
    _assert_one_line_error(code, err, r"ratings.dat:4: rating 'bad' is not a number")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-1m", "out"]


@pytest.mark.parametrize("target", ["source", "file", "other"])
def test_force_never_replaces_what_is_not_a_dataset(tmp_path, target):
    src = _ml(tmp_path)
    out = {"source": src, "file": src / "ratings.dat", "other": tmp_path}[target]
    with pytest.raises(LlmrecError, match=rf"{out}: (exists and )?(is )?not a dataset directory"):
        import_dataset(src, "movielens", out, force=True, quiet=True)
    assert sorted(p.name for p in src.iterdir()) == ["movies.dat", "ratings.dat"]
    assert (src / "ratings.dat").read_text() == ML1M


def test_usage_errors_are_not_tracebacks(tmp_path, monkeypatch, capsys):
    src = _ml(tmp_path)
    args = ["data", "import", str(src), "-f", "movielens", "-o", str(tmp_path / "o"), "--dedup", "most"]
    code, _, err = run_main(monkeypatch, capsys, args)
    _assert_one_line_error(code, err, r"--dedup 'most': choose one of keep, first, last")
    code, _, err = run_main(monkeypatch, capsys, ["data", "import", str(src), "-o", str(tmp_path / "o")])
    assert code == 2 and "Missing option '--format'" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
