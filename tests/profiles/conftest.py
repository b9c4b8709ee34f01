"""Fixtures for the profile tests: a real PostgreSQL server started on 127.0.0.1 for the session, an updater on
the bundled tokenizer and MiniLM, and a small set of reviews imported as a dataset."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from llmrec.inference.vllm_server import free_port

DATA = Path(__file__).parent / "data"  # reviews written for these tests, in the Amazon Reviews 2023 layout


def _pg_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        pytest.fail(f"PostgreSQL's {name} is not installed; `make install` installs it (Debian package postgresql)")
    return found


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of its own (trust auth, 127.0.0.1 only), stopped and deleted at the end of the session.
    As root it runs as the ``postgres`` system user, since PostgreSQL refuses to run as root; its directory is
    outside pytest's (which only root may enter)."""
    root = Path(tempfile.mkdtemp(prefix="llmrec-postgres-"))
    data, port = root / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    run = {"check": True, "capture_output": True, "text": True, "cwd": "/"}
    subprocess.run([*as_user, _pg_binary("initdb"), "-D", str(data), "-U", "llmrec", "--auth=trust"], **run)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c max_connections=50 -c fsync=off"
    start = [*as_user, _pg_binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"]
    subprocess.run(start, **run)
    try:
        yield f"postgresql://llmrec@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_user, _pg_binary("pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh database on the session's server."""
    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{postgres_server}/postgres", autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return f"{postgres_server}/{name}"


@pytest.fixture(scope="session")
def updater():
    """The real updater: the bundled LLM's tokenizer for the budget, MiniLM for similar aspects."""
    from llmrec.profiles.build import load_updater

    return load_updater(budget=120, device="cpu")


@pytest.fixture(scope="session")
def amazon(tmp_path_factory: pytest.TempPathFactory):
    """Six users' reviews of sixteen products in three categories, imported with the amazon importer."""
    from llmrec.data.importers import import_dataset

    out = tmp_path_factory.mktemp("amazon") / "reviews"
    return import_dataset(DATA / "reviews.jsonl", "amazon", out, meta=DATA / "meta.jsonl", quiet=True)
