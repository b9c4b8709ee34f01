"""Profile stores on real databases: SQLite files and a PostgreSQL server started for the session. Versions, the
history, idempotence by review, failures kept for a retry, and concurrent writers that lose no update."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from llmrec.errors import LlmrecError
from llmrec.profiles.schema import Fact
from llmrec.profiles.store import open_store
from llmrec.profiles.updater import ProfileUpdater

WRITERS, UPDATES = 8, 100


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'profiles.db'}"
    return request.getfixturevalue("postgres_url")


def plain() -> ProfileUpdater:
    """An updater without models (identical aspects match; words count the budget): the store is under test."""
    return ProfileUpdater(budget=100_000)


def test_versions_history_and_idempotence_by_review(url: str) -> None:
    store = open_store(url, plain())
    try:
        assert store.get("u") is None and store.history("u") == []
        first = store.apply("u", [Fact("like", "jazz", "q", "r1")], review_id="r1")
        second = store.apply("u", [Fact("dislike", "jazz", "q", "r2")], expected_version=first.version, review_id="r2")
        again = store.apply("u", [Fact("like", "rock", "q", "r2")], review_id="r2")  # r2 is applied already
        assert again == second and [p.version for p in store.history("u")] == [1, 2]
        assert store.get("u").of_kind("dislike")[0].aspect == "jazz" and not store.get("u").of_kind("like")
        assert store.applied(["r1", "r2", "r3"]) == {"r1", "r2"} and store.users() == ["u"]
        stale = store.apply("u", [Fact("like", "blues", "q", "r3")], expected_version=1, review_id="r3")
        assert stale.version == 3 and stale.of_kind("like")[0].aspect == "blues"  # stale version: merged, not lost
        store.record_failure("r9", "u", "did not parse")
        store.record_failure("r9", "u", "did not parse again")
        assert store.failures() == [{"review_id": "r9", "user": "u", "error": "did not parse again", "attempts": 2}]
        store.apply("u", [], review_id="r9")
        assert store.failures() == []  # applied: its failure is gone in the same transaction
    finally:
        store.close()
    reader = open_store(url)
    try:
        assert reader.get("u").version == 4
        with pytest.raises(LlmrecError, match="without an updater"):
            reader.apply("u", [])
    finally:
        reader.close()


def _write(url: str, writer: int, users: int) -> None:
    store = open_store(url, plain())
    try:
        for n in range(UPDATES):
            user = f"u{(writer * UPDATES + n) % users}"
            store.apply(user, [Fact("feature", f"w{writer} n{n}", "q", "r")], review_id=f"w{writer}-{n}")
    finally:
        store.close()


@pytest.mark.parametrize("users", [1, 16])
def test_concurrent_writers_lose_no_update(url: str, users: int) -> None:
    open_store(url, plain()).close()  # the tables exist before the writers race
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write, args=(url, w, users)) for w in range(WRITERS)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=600)
        assert process.exitcode == 0
    store = open_store(url)
    try:
        profiles = [store.get(f"u{u}") for u in range(users)]
        assert sum(p.version for p in profiles) == WRITERS * UPDATES  # every update is a version of its own
        facts = {f.aspect for p in profiles for f in p.facts}
        assert facts == {f"w{w} n{n}" for w in range(WRITERS) for n in range(UPDATES)}  # and every one landed once
        assert len(store.applied([f"w{w}-{n}" for w in range(WRITERS) for n in range(UPDATES)])) == WRITERS * UPDATES
    finally:
        store.close()


def test_a_write_out_of_tries_is_an_error_not_a_silent_loss(tmp_path: Path, monkeypatch) -> None:
    from llmrec.profiles import sql

    monkeypatch.setattr(sql, "RETRIES", 0)  # as if every try lost its race
    store = open_store(f"sqlite:///{tmp_path / 'profiles.db'}", plain())
    try:
        with pytest.raises(LlmrecError, match="could not store an update of user 'u'.*overloaded"):
            store.apply("u", [Fact("like", "jazz", "q", "r1")], review_id="r1")
        with pytest.raises(LlmrecError, match="could not record a failure of review 'r1'.*overloaded"):
            store.record_failure("r1", "u", "did not parse")
        assert store.get("u") is None and store.failures() == []
    finally:
        store.close()


def test_bad_urls_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(LlmrecError, match="unknown profile store"):
        open_store("mysql://host/db")
    with pytest.raises(LlmrecError, match="give a file"):
        open_store("sqlite://")
    with pytest.raises(LlmrecError, match="cannot connect to the profile store"):
        open_store("postgresql://nobody@127.0.0.1:1/none")
