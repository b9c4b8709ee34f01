"""``llmrec models``: the bundled default models, listed and prepared (converted) once."""

from __future__ import annotations

from typing import Annotated

import typer

from llmrec.cli.common import JsonFlag, echo, emit_json, group

app = group("The bundled default models: list them, prepare (convert) them.")


@app.command("list")
def models_list(as_json: JsonFlag = False) -> None:
    """The default models, their roles and local paths."""
    from llmrec.models import describe_defaults

    models = describe_defaults()
    if as_json:
        emit_json(models)
        return
    for role, info in models.items():
        state = "ready" if info["ready"] else "not prepared (run `llmrec models prepare`)"
        echo(f"{role:<9} {info['name']:<24} {state}\n          {info['path']}\n          {info['description']}")


@app.command("prepare")
def models_prepare(
    force: Annotated[bool, typer.Option(help="Convert again even if a valid cached copy exists.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Convert the default LLM into the cache and check the embedder (a second run converts nothing)."""
    from llmrec.models import default_embedder_path, describe_defaults, prepare_llm

    path, converted = prepare_llm(force=force)
    default_embedder_path()
    models = describe_defaults()
    models["llm"]["converted"] = converted
    if as_json:
        emit_json(models)
    else:
        echo(f"llm       {path} ({'converted' if converted else 'already prepared'})")
        echo(f"embedder  {models['embedder']['path']}")
