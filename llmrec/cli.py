"""The ``llmrec`` command line. Each command is a thin call into the library.

Commands that report figures take ``--json`` and then print one JSON object as the last line of stdout;
progress and logs go to stderr. A user-fixable error exits 1 with one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from llmrec.errors import LlmrecError

app = typer.Typer(
    help="llmrec: LLM-augmented sequential recommendation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Import datasets, show statistics and user histories.", no_args_is_help=True)
models_app = typer.Typer(help="The bundled default models: list them, prepare (convert) them.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line of stdout.")]
DatasetArg = Annotated[str, typer.Argument(help="A builtin dataset name (ml-100k) or a dataset directory.")]


def emit_json(payload: dict[str, Any]) -> None:
    """Print ``payload`` as one JSON line on stdout."""
    print(json.dumps(payload, default=str))


def _echo(text: str = "") -> None:
    print(text)


@data_app.command("import")
def data_import(
    src: Annotated[Path, typer.Argument(help="Source file or directory.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="movielens, recbole, sequences, amazon or csv.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to create.")],
    columns: Annotated[
        str | None, typer.Option(help="csv: ROLE=COLUMN pairs, e.g. user=userId,item=movieId,time=timestamp.")
    ] = None,
    titles: Annotated[Path | None, typer.Option(help="sequences: an item<TAB>title file.")] = None,
    meta: Annotated[Path | None, typer.Option(help="amazon: the metadata JSON-lines file (titles, categories).")] = None,
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the --out directory name).")] = None,
    min_user: Annotated[int, typer.Option(help="k-core: minimum interactions per user (iterated).")] = 0,
    min_item: Annotated[int, typer.Option(help="k-core: minimum interactions per item (iterated).")] = 0,
    min_rating: Annotated[
        float | None, typer.Option(help="Keep only interactions rated at least this (implicit feedback).")
    ] = None,
    dedup: Annotated[str, typer.Option(help="Repeated user-item pairs: keep (all), first or last.")] = "keep",
    tie_order: Annotated[str, typer.Option(help="Equal timestamps: source (file order) or item (by id).")] = "source",
    force: Annotated[bool, typer.Option(help="Overwrite an existing --out directory.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Import a source dataset into a dataset directory (written atomically)."""
    from llmrec.data.importers import import_dataset
    from llmrec.data.preprocess import Preprocessing
    from llmrec.data.stats import dataset_stats

    options = Preprocessing(
        min_rating=min_rating, dedup=dedup, min_user=min_user, min_item=min_item, tie_order=tie_order
    )
    dataset = import_dataset(
        src, fmt, out, options=options, name=name, force=force, columns=columns, titles=titles, meta=meta
    )
    stats = dataset_stats(dataset)
    if as_json:
        emit_json({**stats, "steps": dataset.meta["steps"]})
    else:
        _echo(
            f"imported {stats['interactions']:,} interactions of {stats['users']:,} users on "
            f"{stats['items']:,} items into {dataset.path}"
        )


def _print_stats(stats: dict[str, Any]) -> None:
    width = max(len(k) for k in stats)
    for key, value in stats.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        _echo(f"{key:<{width}}  {shown}")


@data_app.command("stats")
def data_stats(dataset: DatasetArg, as_json: JsonFlag = False) -> None:
    """Counts, sequence lengths and density of a dataset."""
    from llmrec.data.builtin import load_dataset
    from llmrec.data.stats import dataset_stats

    stats = dataset_stats(load_dataset(dataset))
    if as_json:
        emit_json(stats)
    else:
        _print_stats(stats)


@data_app.command("show")
def data_show(
    dataset: DatasetArg,
    user: Annotated[str, typer.Option("--user", "-u", help="Raw user id as in the source, or #N for internal id N.")],
    limit: Annotated[int, typer.Option(help="Show the last N interactions (0: all).")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """A user's history in time order, with item titles."""
    from llmrec.data.builtin import load_dataset
    from llmrec.data.display import user_history

    history = user_history(load_dataset(dataset), user, limit=limit)
    if as_json:
        emit_json(history)
        return
    _echo(f"user {history['raw_id']} (#{history['user_id']}): {history['length']} interactions")
    for row in history["history"]:
        rating = f"  {row['rating']:g}*" if row.get("rating") is not None else ""
        _echo(f"  {row['position']:>4}  {row['time']:<19}{rating}  {row['title']}  [{row['raw_id']}]")


@models_app.command("list")
def models_list(as_json: JsonFlag = False) -> None:
    """The default models, their roles and local paths."""
    from llmrec.models import describe_defaults

    models = describe_defaults()
    if as_json:
        emit_json(models)
        return
    for role, info in models.items():
        state = "ready" if info["ready"] else "not prepared (run `llmrec models prepare`)"
        _echo(f"{role:<9} {info['name']:<24} {state}\n          {info['path']}\n          {info['description']}")


@models_app.command("prepare")
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
        _echo(f"llm       {path} ({'converted' if converted else 'already prepared'})")
        _echo(f"embedder  {models['embedder']['path']}")


@app.command()
def demo(
    dataset: Annotated[str, typer.Option(help="Builtin name or dataset directory.")] = "ml-100k",
    users: Annotated[int, typer.Option(help="How many users' histories to show.")] = 3,
) -> None:
    """The main job on the bundled defaults: prepare models and data, show statistics and histories."""
    from llmrec.demo import run_demo

    run_demo(dataset, users)


def main() -> None:
    """Entry point: run the app; a user-fixable error becomes one line on stderr and exit code 1."""
    try:
        app()
    except LlmrecError as err:
        print(f"llmrec: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("llmrec: interrupted", file=sys.stderr)
        sys.exit(130)
