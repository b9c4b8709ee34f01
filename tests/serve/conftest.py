"""A real ``llmrec serve`` process on 127.0.0.1 for the server tests (and the browser test), started once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmrec.inference.vllm_server import free_port, wait_until_ready

API_KEY = "test-key"


class Server:
    """A server process: ``url``, ``start()``, ``kill()`` (SIGKILL), ``stop()`` (SIGTERM, graceful)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [*args, "--port", str(self.port)]
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> Server:
        with self.log.open("a") as sink:
            command = [sys.executable, "-m", "llmrec", "serve", *self.args]
            self.process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        wait_until_ready(self.process, f"{self.url}/healthz", self.log, timeout)
        return self

    def kill(self) -> None:
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def api_key() -> str:
    return API_KEY


@pytest.fixture(scope="session")
def start_server() -> type[Server]:
    """Start another server: ``start_server(args, log).start()``."""
    return Server


@pytest.fixture(scope="session")
def server(sasrec_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The agent served over ml-100k with the session's SASRec run, a SQLite profile store and an API key; a queue
    of two calls, so that a burst meets 429."""
    root = tmp_path_factory.mktemp("serve")
    args = ["--dataset", "ml-100k", "--run", str(sasrec_run), "--db", f"sqlite:///{root / 'profiles.db'}"]
    args += ["--api-key", API_KEY, "--max-queue", "2", "--max-batch", "4", "--max-tokens", "24", "--device", "cpu"]
    running = Server(args, root / "server.log").start()
    yield running
    running.stop()
