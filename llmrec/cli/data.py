"""``llmrec data``: import datasets, show statistics and user histories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmrec.cli.common import DatasetArg, JsonFlag, echo, emit_json, group

app = group("Import datasets, show statistics and user histories.")


@app.command("import")
def data_import(
    src: Annotated[Path, typer.Argument(help="Source file or directory.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="movielens, recbole, sequences, amazon or csv.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset directory to create.")],
    columns: Annotated[
        str | None, typer.Option(help="csv: ROLE=COLUMN pairs, e.g. user=userId,item=movieId,time=timestamp.")
    ] = None,
    titles: Annotated[Path | None, typer.Option(help="sequences: an item<TAB>title file.")] = None,
    meta: Annotated[
        Path | None, typer.Option(help="amazon: the metadata JSON-lines file (titles, categories).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the --out directory name).")] = None,
    min_user: Annotated[int, typer.Option(help="k-core: minimum interactions per user (iterated).")] = 0,
    min_item: Annotated[int, typer.Option(help="k-core: minimum interactions per item (iterated).")] = 0,
    min_rating: Annotated[
        float | None, typer.Option(help="Keep only interactions rated at least this (implicit feedback).")
    ] = None,
    dedup: Annotated[str, typer.Option(help="Repeated user-item pairs: keep (all), first or last.")] = "keep",
    tie_order: Annotated[str, typer.Option(help="Equal timestamps: source (file order) or item (by id).")] = "source",
    force: Annotated[bool, typer.Option(help="Replace an existing --out dataset directory.")] = False,
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
        echo(
            f"imported {stats['interactions']:,} interactions of {stats['users']:,} users on "
            f"{stats['items']:,} items into {dataset.path}"
        )


def _print_stats(stats: dict[str, Any]) -> None:
    width = max(len(k) for k in stats)
    for key, value in stats.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        echo(f"{key:<{width}}  {shown}")


@app.command("stats")
def data_stats(dataset: DatasetArg, as_json: JsonFlag = False) -> None:
    """Counts, sequence lengths and density of a dataset."""
    from llmrec.data.builtin import load_dataset
    from llmrec.data.stats import dataset_stats

    stats = dataset_stats(load_dataset(dataset))
    if as_json:
        emit_json(stats)
    else:
        _print_stats(stats)


@app.command("show")
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
    echo(f"user {history['raw_id']} (#{history['user_id']}): {history['length']} interactions")
    for row in history["history"]:
        rating = f"  {row['rating']:g}*" if row.get("rating") is not None else ""
        echo(f"  {row['position']:>4}  {row['time']:<19}{rating}  {row['title']}  [{row['raw_id']}]")
