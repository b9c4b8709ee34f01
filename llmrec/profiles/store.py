"""Profile stores: every version of every user's profile in a real database, SQLite (embedded, the default) or
PostgreSQL, behind one URL (``sqlite:///path/profiles.db``, ``postgresql://user@host:5432/db``).

The contract (``../DESIGN.md``): ``get(user)``, ``history(user)``, ``apply(user, facts, expected_version)``.
``apply`` is optimistic: it reads the latest version, merges the facts with the updater, and writes version + 1 in
one transaction, together with the review it applied (so a review is applied once, whatever happens) and the
removal of that review's recorded failure. A writer that lost the race (the version exists by then) reads again
and merges again: concurrent writers lose no update, and a stale ``expected_version`` costs a retry, not an update.
Both backends share that logic (:class:`llmrec.profiles.sql.SQLStore`); they differ in connection, placeholder and
error types.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from llmrec.errors import LlmrecError
from llmrec.profiles.sql import SCHEMA, SQLStore
from llmrec.profiles.updater import ProfileUpdater


class SQLiteStore(SQLStore):
    """Profiles in one SQLite file (WAL journal, so readers never wait for the writer; one transaction per
    update; a busy database is waited for up to ``timeout`` seconds)."""

    conflict = (sqlite3.IntegrityError,)

    def __init__(self, path: Path | str, updater: ProfileUpdater | None = None, timeout: float = 60.0) -> None:
        super().__init__(updater)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        with self.transaction() as cursor:
            for statement in SCHEMA:
                cursor.execute(statement)

    def open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        return connection

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[sqlite3.Cursor]:
        cursor = self.connection().cursor()
        # A writer takes the write lock up front: no deadlock upgrading a read lock. Readers never wait (WAL).
        cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")


def open_store(url: str, updater: ProfileUpdater | None = None) -> SQLStore:
    """The store at ``url``: ``sqlite:///path`` (a file, created when missing; ``sqlite:///:memory:`` is not
    shared between processes) or ``postgresql://user:password@host:port/db``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path:
            raise LlmrecError(f"{url}: give a file, e.g. sqlite:///profiles.db or sqlite:////abs/path/profiles.db")
        return SQLiteStore(path, updater)
    if parsed.scheme in ("postgresql", "postgres"):
        from llmrec.profiles.postgres import PostgresStore

        return PostgresStore(url, updater)
    raise LlmrecError(f"unknown profile store {url!r}: use sqlite:///path/profiles.db or postgresql://host/db")
