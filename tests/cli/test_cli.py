"""The command line as a user runs it: subprocesses, exit codes, stdout JSON, one-line errors."""

import json
import subprocess
import sys
import time

import pytest


def last_json(result):
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_help_is_fast_and_imports_no_torch(llmrec_cli):
    start = time.perf_counter()
    result = llmrec_cli("--help")
    assert time.perf_counter() - start < 5  # the 2 s target is measured in eval/, this only catches regressions
    for command in ("data", "models", "demo"):
        assert command in result.stdout
    probe = "import sys, llmrec.cli; print('torch' in sys.modules, 'pandas' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.split() == [
        "False",
        "False",
    ]


def test_stats_and_show_on_builtin(ml100k, llmrec_cli):
    stats = last_json(llmrec_cli("data", "stats", "ml-100k", "--json"))
    assert {k: stats[k] for k in ("users", "items", "interactions")} == {
        "users": 943,
        "items": 1682,
        "interactions": 100_000,
    }
    assert stats["avg_seq_len"] == pytest.approx(106.0445, abs=1e-4)
    assert stats["density"] == pytest.approx(0.063047, abs=1e-6)
    shown = last_json(llmrec_cli("data", "show", "ml-100k", "--user", "196", "--json"))
    assert shown["length"] == 39 and shown["history"][-1]["title"] == "Operation Dumbo Drop"
    text = llmrec_cli("data", "show", "ml-100k", "--user", "196", "--limit", "3").stdout
    assert "Operation Dumbo Drop" in text and len(text.strip().splitlines()) == 4


def test_unknown_dataset_and_user_are_one_line_errors(ml100k, tmp_path, llmrec_cli):
    for args in (("data", "stats", str(tmp_path / "nope")), ("data", "show", "ml-100k", "--user", "99999")):
        result = llmrec_cli(*args, check=False)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("llmrec: error:")
        assert "Traceback" not in result.stderr


def test_models_list_json(llmrec_cli):
    listing = last_json(llmrec_cli("models", "list", "--json"))
    assert set(listing) == {"llm", "embedder"}
    for role in listing.values():
        assert role["name"] and role["path"]


def test_usage_errors_are_one_line_with_exit_code_2(llmrec_cli):
    for args in (("data", "import", "somewhere"), ("data", "stats", "ml-100k", "--bogus"), ("dta",)):
        result = llmrec_cli(*args, check=False)
        assert result.returncode == 2
        assert result.stderr.startswith("llmrec: error:") and result.stderr.count("\n") == 1
        assert "--help" in result.stderr
