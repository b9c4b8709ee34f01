"""Profiles in PostgreSQL (psycopg 3), for deployments that outgrow one machine: the same tables and the same
optimistic updates as SQLite (:class:`llmrec.profiles.sql.SQLStore`); a unique-key violation is the lost race."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llmrec.errors import LlmrecError
from llmrec.profiles.sql import SCHEMA, SQLStore
from llmrec.profiles.updater import ProfileUpdater


class PostgresStore(SQLStore):
    """Profiles in the PostgreSQL database at ``url`` (tables created when missing)."""

    placeholder = "%s"

    def __init__(self, url: str, updater: ProfileUpdater | None = None) -> None:
        try:
            import psycopg
        except ImportError:
            raise LlmrecError("PostgreSQL profile stores need psycopg 3: pip install 'psycopg[binary]'") from None
        super().__init__(updater)
        self.psycopg = psycopg
        self.conflict = (psycopg.errors.UniqueViolation, psycopg.errors.SerializationFailure)
        self.url = url
        with self.transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(7341)")  # two processes creating the tables wait in turn
            for statement in SCHEMA:
                cursor.execute(statement)

    def open(self) -> Any:
        try:
            return self.psycopg.connect(self.url, autocommit=True)
        except self.psycopg.OperationalError as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise LlmrecError(f"cannot connect to the profile store {self.url}: {first}") from None

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Any]:
        connection = self.connection()
        with connection.transaction(), connection.cursor() as cursor:
            yield cursor
