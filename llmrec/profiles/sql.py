"""The profile-store logic both databases share (:class:`SQLStore`): reading versions and the history, applying
facts optimistically in one transaction, marking reviews applied and keeping failures. The backends
(:class:`llmrec.profiles.store.SQLiteStore`, :class:`llmrec.profiles.postgres.PostgresStore`) open the
connection and name their conflict error."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llmrec.errors import LlmrecError
from llmrec.profiles.schema import Fact, Profile
from llmrec.profiles.updater import ProfileUpdater

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS profiles (user_id TEXT NOT NULL, version INTEGER NOT NULL, data TEXT NOT NULL, "
    "created DOUBLE PRECISION NOT NULL, PRIMARY KEY (user_id, version))",
    "CREATE TABLE IF NOT EXISTS applied (review_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS failures (review_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, error TEXT NOT NULL, "
    "attempts INTEGER NOT NULL, updated DOUBLE PRECISION NOT NULL)",
)
RETRIES = 200
OVERLOADED = "the store is overloaded (too many writers of one user at once)"
BACKOFF = 0.005, 0.5  # seconds: the first retry's wait bound, doubled per retry up to the second


def _back_off(attempt: int) -> None:
    """Wait a random time before retry ``attempt`` (0-based) of a write that lost a race. Without it, writers
    retrying at once on one user collide again and again, and on a loaded machine one of them can lose every
    try; the random spread lets each one through in turn."""
    time.sleep(random.uniform(0, min(BACKOFF[1], BACKOFF[0] * 2**attempt)))


class SQLStore:
    """The store's logic over a DB-API connection; subclasses open it and name its conflict error."""

    placeholder = "?"
    conflict: tuple[type[BaseException], ...] = ()

    def __init__(self, updater: ProfileUpdater | None = None) -> None:
        self.updater = updater
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    # -- backend hooks -------------------------------------------------------------------------------------------

    def open(self) -> Any:
        """A new connection to the database."""
        raise NotImplementedError

    def connection(self) -> Any:
        """This thread's connection (each thread and each process opens its own: a server's request threads and a
        forked worker never share one)."""
        held = getattr(self._local, "held", None)
        if held is None or held[0] != os.getpid() or getattr(held[1], "closed", False):
            held = (os.getpid(), self.open())
            self._local.held = held
            with self._lock:
                self._opened.append(held[1])
        return held[1]

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        """A cursor inside one transaction (``write``: one that will write): committed on success, rolled back on
        any error."""
        raise NotImplementedError

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            with contextlib.suppress(Exception):  # a connection of another thread may be closed already
                connection.close()
        self._local = threading.local()

    # -- reading -------------------------------------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.placeholder)

    def _rows(self, statement: str, *args: Any) -> list[tuple]:
        with self.transaction(write=False) as cursor:
            cursor.execute(self._sql(statement), args)
            return list(cursor.fetchall())

    def get(self, user: str) -> Profile | None:
        """The latest version of ``user``'s profile, or ``None``."""
        rows = self._rows("SELECT data FROM profiles WHERE user_id = ? ORDER BY version DESC LIMIT 1", str(user))
        return Profile.from_json(rows[0][0]) if rows else None

    def history(self, user: str) -> list[Profile]:
        """Every version of ``user``'s profile, oldest first."""
        rows = self._rows("SELECT data FROM profiles WHERE user_id = ? ORDER BY version", str(user))
        return [Profile.from_json(row[0]) for row in rows]

    def users(self) -> list[str]:
        """Every user with a profile."""
        return [row[0] for row in self._rows("SELECT DISTINCT user_id FROM profiles ORDER BY user_id")]

    def applied(self, review_ids: list[str]) -> set[str]:
        """Which of ``review_ids`` are applied already."""
        done: set[str] = set()
        for start in range(0, len(review_ids), 500):
            chunk = review_ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            found = self._rows(f"SELECT review_id FROM applied WHERE review_id IN ({marks})", *chunk)
            done.update(row[0] for row in found)
        return done

    def failures(self) -> list[dict[str, Any]]:
        """Reviews whose extraction failed and that are not applied yet, with the error and the attempts."""
        rows = self._rows("SELECT review_id, user_id, error, attempts FROM failures ORDER BY review_id")
        return [{"review_id": r[0], "user": r[1], "error": r[2], "attempts": r[3]} for r in rows]

    # -- writing -------------------------------------------------------------------------------------------------

    def record_failure(self, review_id: str, user: str, error: str) -> None:
        """Record (or count again) a failed extraction of ``review_id``, to retry later."""
        for attempt in range(RETRIES):
            try:
                with self.transaction() as cursor:
                    cursor.execute(self._sql("SELECT attempts FROM failures WHERE review_id = ?"), (review_id,))
                    row = cursor.fetchone()
                    if row is None:
                        cursor.execute(
                            self._sql("INSERT INTO failures VALUES (?, ?, ?, ?, ?)"),
                            (review_id, str(user), error[:1000], 1, time.time()),
                        )
                    else:
                        cursor.execute(
                            self._sql("UPDATE failures SET error = ?, attempts = ?, updated = ? WHERE review_id = ?"),
                            (error[:1000], row[0] + 1, time.time(), review_id),
                        )
                return
            except self.conflict:
                _back_off(attempt)
        raise LlmrecError(f"could not record a failure of review {review_id!r} after {RETRIES} tries; {OVERLOADED}")

    def apply(
        self,
        user: str,
        facts: list[Fact],
        expected_version: int | None = None,
        review_id: str | None = None,
        reviews: int | None = None,
    ) -> Profile:
        """Merge ``facts`` into ``user``'s latest profile and store the result as the next version, in one
        transaction (with ``review_id`` marked applied); returns the stored profile. A review applied before
        returns the current profile unchanged. ``reviews``: how many reviews the update holds (default 1 with a
        ``review_id``, else 0, e.g. a preference stated in a chat)."""
        if self.updater is None:
            raise LlmrecError("this profile store was opened without an updater: it reads profiles, it applies none")
        count = (1 if review_id else 0) if reviews is None else reviews
        user = str(user)
        for attempt in range(RETRIES):
            current = self.get(user)
            if review_id is not None and self.applied([review_id]):
                return current if current is not None else Profile(user)
            base = current.version if current is not None else 0
            if expected_version is not None and expected_version != base:
                expected_version = None  # stale: merged into the latest version instead, never lost
            new = self.updater.merge(current, facts, user, count)
            try:
                with self.transaction() as cursor:
                    cursor.execute(
                        self._sql("INSERT INTO profiles VALUES (?, ?, ?, ?)"),
                        (user, new.version, new.to_json(), time.time()),
                    )
                    if review_id is not None:
                        mark = self._sql("INSERT INTO applied VALUES (?, ?, ?)")
                        cursor.execute(mark, (review_id, user, new.version))
                        cursor.execute(self._sql("DELETE FROM failures WHERE review_id = ?"), (review_id,))
                return new
            except self.conflict:  # another writer stored this version (or this review) first: read again, merge again
                _back_off(attempt)
        raise LlmrecError(f"could not store an update of user {user!r} after {RETRIES} tries; {OVERLOADED}")
