"""``llmrec encoder``: train sequential encoders and recommend from them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmrec.cli.common import DeviceOption, JsonFlag, echo, emit_json, group, read_yaml

app = group("Sequential encoders: train, recommend.")


@app.command("train")
def encoder_train(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create (or to resume).")],
    dataset: Annotated[str, typer.Option(help="Builtin name or dataset directory.")] = "ml-100k",
    model: Annotated[str | None, typer.Option(help="Encoder name: sasrec, bert4rec, gru4rec, pop.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML with `model:`, `encoder:` (model fields) and `train:` sections.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    loss: Annotated[str | None, typer.Option(help="ce, sampled, bce or gbce.")] = None,
    holdout: Annotated[
        int | None,
        typer.Option(help="Leave each user's last N training items out (for an LLM stacked on the encoder)."),
    ] = None,
    device: DeviceOption = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in --out.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train an encoder with early stopping on validation NDCG@10 (leave-one-out split)."""
    from llmrec.encoders.train import train_encoder

    values = read_yaml(config, ("model", "encoder", "train")) if config else {}
    encoder_values = dict(values.get("encoder") or {})
    train_values = dict(values.get("train") or {})
    if loss is not None:
        encoder_values["loss"] = loss
    given = {"epochs": epochs, "seed": seed, "device": device, "holdout": holdout}
    train_values.update({key: value for key, value in given.items() if value is not None})
    name = model or values.get("model") or "sasrec"
    metrics = train_encoder(out, name, dataset, encoder_values, train_values, resume=resume)
    if as_json:
        emit_json(metrics)
    else:
        test = metrics["test"]
        echo(
            f"{metrics['model']}: best epoch {metrics['best_epoch']} of {metrics['epochs']}, "
            f"test ndcg@10 {test['ndcg@10']:.4f} hr@10 {test['hr@10']:.4f} ({test['protocol']} ranking); run in {out}"
        )


@app.command("recommend")
def encoder_recommend(
    run: Annotated[Path, typer.Argument(help="Run directory of a trained encoder.")],
    user: Annotated[str, typer.Option("--user", "-u", help="Raw user id, or #N for internal id N.")],
    k: Annotated[int, typer.Option("-k", help="How many items.")] = 10,
    include_seen: Annotated[bool, typer.Option(help="Allow items the user already has.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Top-k next items for a user after their whole history, with titles and scores."""
    from llmrec.encoders.recommend import recommend

    result = recommend(run, user, k=k, include_seen=include_seen)
    if as_json:
        emit_json(result)
        return
    echo(f"user {result['raw_id']} ({result['history_length']} interactions), {result['model']}:")
    for row in result["recommendations"]:
        echo(f"  {row['rank']:>3}. {row['title']}  [{row['raw_id']}]  {row['score']:.3f}")
