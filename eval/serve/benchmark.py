"""Serving benchmark: ``llmrec serve`` on 127.0.0.1 under 1, 8 and 32 concurrent chat sessions and a burst of
``/v1/recommend``, bounded in requests and time.

    .venv/bin/python eval/serve/benchmark.py                  # both engines, writes eval/serve/RESULTS.md
    .venv/bin/python eval/serve/benchmark.py --engines hf     # one engine; the other's kept figures stay
    .venv/bin/python eval/serve/benchmark.py --turns 2        # fewer turns per session

The server runs as users run it (ML-100K, a SASRec run for personal recommendations, a SQLite profile store), on
each engine in turn: the bundled model on the hf engine behind llmrec's batching queue (the default), and the
``openai`` engine over a ``vllm serve`` of the same model on the same machine. Both batch continuously: a new
request joins the running batch at the next decoding step. Servers are started by this script and stopped at the
end. Each session streams its turns (a recommendation, a search, a stated preference) with the OpenAI wire format.
Reported: time to the first token the model generated (the reply's fixed opening sentence, sent before the model
runs, is not counted) and to the first text shown, p50 and p95; generated tokens per second per session; 429s;
errors (5xx, failed connections and streams that carried an error event); and ``/v1/recommend`` latency p50 and
p95 on the encoder path.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from llmrec.inference.vllm_server import child_server, free_port, vllm_server

HERE = Path(__file__).resolve().parent
MESSAGES = ["recommend something for me", "find films about space", "I love westerns and film noir"]
SESSIONS = (1, 8, 32)
ENGINES = {
    "hf": "the bundled SmolLM2-135M-Instruct on the hf engine (transformers) behind llmrec's batching queue: "
    "iteration-level batching of up to 8 rows (a request joins the running batch at the next step)",
    "openai": "`--engine openai` over a `vllm serve` of the bundled SmolLM2-135M-Instruct on the same machine "
    "(bfloat16, 1 GiB of KV cache), up to 8 calls sent at once and batched by vLLM",
}


@contextlib.contextmanager
def llmrec_server(work: Path, run: Path, engine: list[str]) -> Iterator[str]:
    """``llmrec serve`` as users start it; its URL. Stopped with SIGTERM (graceful, as a user stops it)."""
    port = free_port()
    command = [sys.executable, "-m", "llmrec", "serve", "--dataset", "ml-100k", "--run", str(run),
               "--db", f"sqlite:///{work / 'profiles.db'}", "--port", str(port), *engine]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with child_server(command, f"{url}/healthz", work / "server.log", grace=120):
        yield url


def encoder_run(work: Path) -> Path:
    """A SASRec run on ML-100K with the library's defaults (trained once, kept in ``work``)."""
    from llmrec.encoders.train import train_encoder

    run = work / "sasrec"
    if not (run / "metrics.json").exists():
        train_encoder(run, "sasrec", "ml-100k", resume=(run / "config.yaml").exists())
    return run


def one_turn(client: httpx.Client, user: str, history: list[dict[str, str]]) -> dict[str, Any]:
    """One streamed turn; its timings, tokens and status."""
    from llmrec.agent.session import OPENINGS

    body = {"model": "llmrec", "messages": history, "user": user, "stream": True}
    started = time.perf_counter()
    out: dict[str, Any] = {"status": 0, "first_text": None, "first_token": None, "deltas": 0, "text": ""}
    try:
        with client.stream("POST", "/v1/chat/completions", json=body, timeout=300) as response:
            out["status"] = response.status_code
            if response.status_code != 200:
                response.read()
                return out
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: ") :])
                if "error" in chunk:  # the stream broke after it started: an error, whatever the status
                    out["status"] = -2
                    break
                delta = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
                if not delta:
                    continue
                now = time.perf_counter() - started
                out["first_text"] = out["first_text"] if out["first_text"] is not None else now
                if delta not in OPENINGS.values():  # the model's own tokens
                    out["first_token"] = out["first_token"] if out["first_token"] is not None else now
                    out["deltas"] += 1
                out["text"] += delta
    except httpx.TransportError:
        out["status"] = -1
    out["seconds"] = time.perf_counter() - started
    return out


def connect(url: str, connections: int) -> httpx.Client:
    """One client for a scenario's threads: pooled keep-alive connections, as a real client keeps them (a client
    per request would spend the 2 cores on its own set-up and time that instead of the server)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(base_url=url, limits=limits, timeout=300)


def session(client: httpx.Client, user: str, turns: int) -> list[dict[str, Any]]:
    history: list[dict[str, str]] = []
    results = []
    for message in MESSAGES[:turns]:
        history.append({"role": "user", "content": message})
        result = one_turn(client, user, history)
        results.append(result)
        history.append({"role": "assistant", "content": result["text"]})
    return results


def scenario(url: str, sessions: int, turns: int) -> dict[str, Any]:
    started = time.perf_counter()
    with connect(url, sessions) as client, concurrent.futures.ThreadPoolExecutor(sessions) as pool:
        runs = list(pool.map(lambda n: session(client, str(1 + n), turns), range(sessions)))
    turns_done = [t for run in runs for t in run]
    ok = [t for t in turns_done if t["status"] == 200]
    first = [t["first_token"] for t in ok if t["first_token"] is not None]
    shown = [t["first_text"] for t in ok if t["first_text"] is not None]
    speed = [t["deltas"] / (t["seconds"] - t["first_token"]) for t in ok if t["first_token"] is not None
             and t["seconds"] > t["first_token"]]  # fmt: skip
    return {
        "sessions": sessions, "turns": len(turns_done), "ok": len(ok), "seconds": time.perf_counter() - started,
        "ttft_p50": pct(first, 50), "ttft_p95": pct(first, 95), "shown_p50": pct(shown, 50),
        "shown_p95": pct(shown, 95), "tokens_per_second": float(np.mean(speed)) if speed else 0.0,
        "status_429": sum(t["status"] == 429 for t in turns_done),
        "errors": sum(t["status"] >= 500 or t["status"] < 0 for t in turns_done),
    }  # fmt: skip


def recommend_burst(url: str, requests: int, concurrency: int) -> dict[str, Any]:
    def one(client: httpx.Client, n: int) -> tuple[int, float]:
        started = time.perf_counter()
        answer = client.post("/v1/recommend", json={"user": str(1 + n % 943), "k": 10}, timeout=60)
        return answer.status_code, time.perf_counter() - started

    with connect(url, concurrency) as client, concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda n: one(client, n), range(requests)))
    latency = [s for code, s in results if code == 200]
    return {"requests": requests, "concurrency": concurrency, "ok": len(latency),
            "p50_ms": pct(latency, 50) * 1000, "p95_ms": pct(latency, 95) * 1000}  # fmt: skip


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=3, help="Turns per session (at most 3).")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--engines", default="hf,openai", help="Comma-separated: hf (the default server), openai (over vllm serve)."
    )
    args = parser.parse_args()
    from llmrec.paths import llmrec_home

    engines = args.engines.split(",")
    if not set(engines) <= set(ENGINES):
        parser.error(f"--engines takes {', '.join(ENGINES)}")
    work = args.work or llmrec_home() / "bench-serve"
    work.mkdir(parents=True, exist_ok=True)
    run = encoder_run(work)
    kept_file = HERE / "results.json"
    kept = json.loads(kept_file.read_text()) if kept_file.exists() else {}
    kept = {name: kept[name] for name in ENGINES if name in kept}  # measured earlier, kept until measured again
    for name in engines:
        kept[name] = measure(work, run, name, args.turns)
        kept_file.write_text(json.dumps(kept, indent=1) + "\n")
    args.out.write_text(render(kept))
    print(args.out.read_text())


def measure(work: Path, run: Path, engine: str, turns: int) -> dict[str, Any]:
    """Every scenario against a server on ``engine`` (started and stopped here, with its vllm serve)."""
    (work / "profiles.db").unlink(missing_ok=True)  # every engine starts from no profiles
    with contextlib.ExitStack() as servers:
        flags = []
        if engine == "openai":
            base_url = servers.enter_context(vllm_server(log=work / "vllm.log", enforce_eager=False))
            flags = ["--engine", "openai", "--base-url", base_url]
        url = servers.enter_context(llmrec_server(work, run, flags))
        with connect(url, 1) as client:
            session(client, "warm-up", 1)  # the first request pays for lazy set-up (the catalog trie, kernels)
        results = {"scenarios": [scenario(url, n, turns if n < 32 else 1) for n in SESSIONS]}
        results["recommend"] = recommend_burst(url, 400, 16)
    cores = len(os.sched_getaffinity(0))
    results["date"] = datetime.now(UTC).strftime("%Y-%m-%d")
    results["machine"] = f"{cores} CPU cores ({platform.machine()})"
    results["command"] = "python eval/serve/benchmark.py " + " ".join(sys.argv[1:])
    return results


def render(kept: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# Serving benchmark",
        "",
        "`llmrec serve` on 127.0.0.1 (ML-100K; a SASRec run; SQLite profiles; 16 chat turns or engine calls in "
        "progress before 429), on each engine below. Each session streams its turns in order (a recommendation, a "
        "search, a stated preference; one turn per session at 32). Time to first token: to the first token the "
        "model generated (the reply's fixed opening sentence is sent before the model runs and is not counted); "
        "first text shown: to that opening. Errors: 5xx, failed connections and streams that carried an error.",
        "",
    ]
    for engine, results in kept.items():
        lines += [
            f"## {engine}: {ENGINES[engine]}",
            "",
            f"Measured {results['date']} on {results['machine']} by `{results['command'].strip()}`.",
            "",
            "| sessions | turns | ok | 429 | errors | first token p50 | first token p95 | first text p95 | tokens/s |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for s in results["scenarios"]:
            lines.append(
                f"| {s['sessions']} | {s['turns']} | {s['ok']} | {s['status_429']} | {s['errors']} | "
                f"{s['ttft_p50']:.2f} s | {s['ttft_p95']:.2f} s | {s['shown_p95']:.2f} s | "
                f"{s['tokens_per_second']:.1f} |"
            )
        r = results["recommend"]
        lines += [
            "",
            f"`/v1/recommend` (encoder path), {r['requests']} requests at {r['concurrency']} at a time: {r['ok']} "
            f"answered, p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
