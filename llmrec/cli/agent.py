"""``llmrec chat`` (profile-aware recommendations in the terminal) and ``llmrec serve`` (the same over HTTP, with
an OpenAI-compatible API and a web page)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from llmrec.cli.common import DeviceOption, echo

DatasetOption = Annotated[str, typer.Option(help="Builtin name or dataset directory.")]
RunOption = Annotated[str | None, typer.Option(help="Encoder run for personal recommendations.")]
DbOption = Annotated[str | None, typer.Option("--db", help="Profile store: sqlite:///path or postgresql://...")]
EngineOption = Annotated[str, typer.Option(help="hf, or openai (an OpenAI-compatible server, e.g. vllm serve).")]
ModelOption = Annotated[str | None, typer.Option(help="LLM path or id (default: the bundled model).")]


def chat(
    dataset: DatasetOption = "ml-100k",
    run: RunOption = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Who is chatting (a raw user id).")] = None,
    db: DbOption = None,
    engine: EngineOption = "hf",
    model: ModelOption = None,
    base_url: Annotated[str | None, typer.Option(help="openai engine: the server's URL.")] = None,
    device: DeviceOption = None,
    message: Annotated[
        list[str] | None, typer.Option("--message", "-m", help="Say this and exit (repeat for several turns).")
    ] = None,
) -> None:
    """Chat about recommendations in the terminal; replies stream, recommended items come with their ids."""
    from llmrec.serve.state import ServeConfig, ServerState

    config = ServeConfig(dataset=dataset, run=run, db=db, engine=engine, model=model, base_url=base_url,
                         device=device or "auto")  # fmt: skip
    print("llmrec chat: loading the models", file=sys.stderr)
    state = ServerState(config)
    session = state.session(user)
    history: list[dict[str, str]] = []
    try:
        for text in message or _lines():
            history.append({"role": "user", "content": text})
            reply = _turn(session, history)
            history.append({"role": "assistant", "content": reply})
    finally:
        state.close()


def _lines() -> Any:
    print("(type a message; an empty line or Ctrl-D ends)", file=sys.stderr)
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            return
        if not line:
            return
        yield line


def _turn(session: Any, history: list[dict[str, str]]) -> str:
    text = ""
    sys.stdout.write("llmrec> ")
    for event in session.respond(history):
        if event["type"] == "text":
            text += event["delta"]
            sys.stdout.write(event["delta"])
            sys.stdout.flush()
        elif event["type"] == "done":
            turn = event["turn"]
            echo()
            for card in turn.cards:
                echo(f"  - {card['title']}  [item {card['item_id']}]  ({card['why']})")
            if turn.profile is not None:
                echo(f"  (profile updated to version {turn.profile['version']})")
    return text


def serve(
    dataset: DatasetOption = "ml-100k",
    run: RunOption = None,
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    api_key: Annotated[str | None, typer.Option(help="Key the writing routes require (Bearer).")] = None,
    engine: EngineOption = "hf",
    model: ModelOption = None,
    base_url: Annotated[str | None, typer.Option(help="openai engine: the server's URL.")] = None,
    device: DeviceOption = None,
    max_batch: Annotated[int, typer.Option(help="Generation requests batched together.")] = 8,
    max_queue: Annotated[int, typer.Option(help="Engine calls or chat turns in progress before 429.")] = 16,
    max_tokens: Annotated[int, typer.Option(help="Most tokens of a reply.")] = 96,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take before 504.")] = 120.0,
    cors_origin: Annotated[list[str] | None, typer.Option(help="Allow this browser origin (CORS; repeat).")] = None,
) -> None:
    """Serve the agent over HTTP: OpenAI-compatible chat, recommendations, profiles and a web page at /."""
    import uvicorn

    from llmrec.serve.app import create_app
    from llmrec.serve.state import ServeConfig

    config = ServeConfig(
        dataset=dataset, run=run, db=db, engine=engine, model=model, base_url=base_url, device=device or "auto",
        max_batch=max_batch, max_queue=max_queue, max_tokens=max_tokens, timeout=timeout, api_key=api_key,
        cors_origins=list(cors_origin or []),
    )  # fmt: skip
    print(f"llmrec serve: loading the models; then http://{host}:{port}/", file=sys.stderr)
    uvicorn.run(create_app(config), host=host, port=port, timeout_graceful_shutdown=30, log_level="warning")
