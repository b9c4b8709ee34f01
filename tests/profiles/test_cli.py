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


def test_a_killed_build_resumes_without_applying_a_review_twice(
    amazon, tmp_path: Path, llmrec_cli, llmrec_here
) -> None:
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
    refused = llmrec_here("profiles", "build", str(amazon.path), "--db", url, "--users", "2", check=False)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    summary = json.loads(llmrec_here(*command[3:], "--resume", "--json").stdout.splitlines()[-1])
    assert summary["skipped"] >= 2 and summary["failed"] == 0
    reviews = [r for r in dataset_reviews(amazon) if r.user in ("u1", "u2")]
    assert summary["skipped"] + summary["applied"] == len(reviews)
    # a finished build run again starts no engine: an openai engine with no server behind it is never reached
    dead = {**os.environ, "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    again = llmrec_cli("profiles", "build", str(amazon.path), "--db", url, "--users", "2", "--engine", "openai",
                       "--resume", "--json", env=dead, timeout=300)  # fmt: skip
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
    shown = json.loads(llmrec_here("profiles", "show", "--db", url, "--user", "u1", "--history", "--json").stdout)
    assert shown["version"] == 5 and len(shown["history"]) == 5 and shown["text"]
    text = llmrec_here("profiles", "show", "--db", url, "--user", "u1", "--history").stdout
    assert "user u1: version 5" in text and "v1: added" in text
    missing = llmrec_here("profiles", "show", "--db", url, "--user", "nobody", check=False)
    assert missing.returncode == 1 and "no profile for user 'nobody'" in missing.stderr


def test_update_applies_a_review_once(tmp_path: Path, ml100k, llmrec_here) -> None:
    url = f"sqlite:///{tmp_path / 'profiles.db'}"

    def update(review: str, *flags: str, check: bool = True):
        return llmrec_here("profiles", "update", "--db", url, "--user", "7", "--review", review, *flags, check=check)

    review = json.dumps({"item": "Toy Story", "rating": 5, "id": "chat-1"})
    first = json.loads(update(review, "--dataset", "ml-100k", "--json").stdout)
    assert first["version"] == 1 and first["facts_extracted"] == 4 and "animation" in first["text"]
    again = json.loads(update(review, "--dataset", "ml-100k", "--json").stdout)
    assert again["version"] == 1  # the same review id is applied once
    written = json.dumps({"item": "GoldenEye", "rating": 2, "text": "Too loud, the plot made no sense."})
    third = json.loads(update(written, "--dataset", "ml-100k", "--engine", "hf", "--json").stdout)
    assert third["version"] == 2 and "Dislikes" in third["text"]
    bad = update("{oops", check=False)
    assert bad.returncode == 1 and "not valid JSON" in bad.stderr
    missing = update(json.dumps({"item": "Toy Story 9", "rating": 5}), "--dataset", "ml-100k", check=False)
    assert missing.returncode == 1 and "no item titled 'Toy Story 9'" in missing.stderr
