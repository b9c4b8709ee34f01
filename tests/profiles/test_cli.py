"""``llmrec profiles``: build (killed with SIGKILL and resumed: no review applied twice), show, update."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from llmrec.profiles.reviews import dataset_reviews
from llmrec.profiles.store import open_store

LLMREC = [sys.executable, "-m", "llmrec"]


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*LLMREC, *args], capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_a_killed_build_resumes_without_applying_a_review_twice(amazon, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'profiles.db'}"
    command = [*LLMREC, "profiles", "build", str(amazon.path), "--db", url, "--engine", "hf", "--users", "2"]
    process = subprocess.Popen([*command, "--batch-size", "2"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        time.sleep(1)
        if (tmp_path / "profiles.db").exists():
            store = open_store(url)
            applied = len(store.applied([r.review_id for r in dataset_reviews(amazon)]))
            store.close()
            if applied >= 2:
                break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    refused = run("profiles", "build", str(amazon.path), "--db", url, "--users", "2", check=False)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    summary = json.loads(run(*command[3:], "--resume", "--json").stdout.splitlines()[-1])
    assert summary["skipped"] >= 2 and summary["failed"] == 0
    reviews = [r for r in dataset_reviews(amazon) if r.user in ("u1", "u2")]
    assert summary["skipped"] + summary["applied"] == len(reviews)
    # a finished build run again starts no engine: an openai engine with no server behind it is never reached
    dead = {**os.environ, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    again = subprocess.run([*LLMREC, "profiles", "build", str(amazon.path), "--db", url, "--users", "2",
                            "--engine", "openai", "--resume", "--json"],
                           capture_output=True, text=True, timeout=300, env=dead)  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout.splitlines()[-1])["skipped"] == len(reviews)
    store = open_store(url)
    try:
        for user in ("u1", "u2"):
            mine = [r for r in reviews if r.user == user]
            history = store.history(user)
            assert [p.version for p in history] == list(range(1, len(mine) + 1))  # one version per review, once
            assert history[-1].reviews == len(mine)
    finally:
        store.close()
    shown = json.loads(run("profiles", "show", "--db", url, "--user", "u1", "--history", "--json").stdout)
    assert shown["version"] == 5 and len(shown["history"]) == 5 and shown["text"]
    text = run("profiles", "show", "--db", url, "--user", "u1", "--history").stdout
    assert "user u1: version 5" in text and "v1: added" in text
    missing = run("profiles", "show", "--db", url, "--user", "nobody", check=False)
    assert missing.returncode == 1 and "no profile for user 'nobody'" in missing.stderr


def test_update_applies_a_review_once(tmp_path: Path, ml100k) -> None:
    url = f"sqlite:///{tmp_path / 'profiles.db'}"
    review = json.dumps({"item": "Toy Story", "rating": 5, "id": "chat-1"})
    first = json.loads(run("profiles", "update", "--db", url, "--user", "7", "--review", review,
                           "--dataset", "ml-100k", "--json").stdout)  # fmt: skip
    assert first["version"] == 1 and first["facts_extracted"] == 4 and "animation" in first["text"]
    again = json.loads(run("profiles", "update", "--db", url, "--user", "7", "--review", review,
                           "--dataset", "ml-100k", "--json").stdout)  # fmt: skip
    assert again["version"] == 1  # the same review id is applied once
    written = json.dumps({"item": "GoldenEye", "rating": 2, "text": "Too loud, the plot made no sense."})
    third = json.loads(run("profiles", "update", "--db", url, "--user", "7", "--review", written,
                           "--dataset", "ml-100k", "--engine", "hf", "--json").stdout)  # fmt: skip
    assert third["version"] == 2 and "Dislikes" in third["text"]
    bad = run("profiles", "update", "--db", url, "--user", "7", "--review", "{oops", check=False)
    assert bad.returncode == 1 and "not valid JSON" in bad.stderr
    unknown = json.dumps({"item": "Toy Story 9", "rating": 5})
    missing = run("profiles", "update", "--db", url, "--user", "7", "--review", unknown, "--dataset", "ml-100k",
                  check=False)  # fmt: skip
    assert missing.returncode == 1 and "no item titled 'Toy Story 9'" in missing.stderr
