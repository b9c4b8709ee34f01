"""Child servers: a server that dies before it answers fails with its own log; one that answers is waited for and
stopped gracefully. (`vllm serve` itself is started through the same helper by the openai engine's tests.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmrec.errors import LlmrecError
from llmrec.inference.vllm_server import free_port, stop_process, wait_until_ready


def launch(code: str, log) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def test_a_server_that_exits_fails_with_its_log(tmp_path) -> None:
    log = tmp_path / "server.log"
    process = launch("print('no such model', flush=True); raise SystemExit(3)", log)
    with pytest.raises(LlmrecError, match=r"exited with 3:\n(.|\n)*no such model"):
        wait_until_ready(process, f"http://127.0.0.1:{free_port()}/v1/models", log, timeout=60)


def test_a_server_is_waited_for_and_stopped(tmp_path) -> None:
    log, port = tmp_path / "server.log", free_port()
    process = launch(f"import time; time.sleep(1); import http.server as h; h.test(h.SimpleHTTPRequestHandler, "
                     f"port={port}, bind='127.0.0.1')", log)  # fmt: skip
    wait_until_ready(process, f"http://127.0.0.1:{port}/", log, timeout=60)
    assert process.poll() is None
    stop_process(process, grace=10)
    assert process.poll() is not None
    alone = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # in the test's group
    stop_process(alone, grace=10)
    assert alone.poll() is not None
    silent = launch("import time; time.sleep(60)", log)
    with pytest.raises(LlmrecError, match="did not answer"):
        wait_until_ready(silent, f"http://127.0.0.1:{free_port()}/", log, timeout=2)
    assert silent.poll() is not None  # stopped when it timed out


def test_a_group_is_stopped_after_its_leader_exited(tmp_path) -> None:
    log = tmp_path / "server.log"
    leader = launch("import subprocess, sys; child = subprocess.Popen([sys.executable, '-c', 'import time; "
                    "time.sleep(120)']); print(child.pid, flush=True)", log)  # fmt: skip
    leader.wait(timeout=30)
    child = int(log.read_text().split()[0])
    stop_process(leader, grace=10, group=True)
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
