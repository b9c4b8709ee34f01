"""``llmrec eval``, ``llmrec sft`` and ``llmrec recommend``: evaluating any run, fine-tuning and serving LLM
recommenders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmrec.cli.common import DeviceOption, JsonFlag, echo, emit_json, parse_settings
from llmrec.errors import LlmrecError

SplitOption = Annotated[str, typer.Option(help="valid or test.")]


def eval_run(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    protocol: Annotated[
        str | None,
        typer.Option(help="Encoder runs: full (default), c20, sampled-N or sampled-N-pop. LLM runs: their own."),
    ] = None,
    split: SplitOption = "test",
    mask_history: Annotated[bool, typer.Option(help="Full protocol: remove history items from the ranking.")] = False,
    engine: Annotated[str, typer.Option(help="LLM runs: the engine that serves them, hf or vllm.")] = "hf",
    limit: Annotated[int, typer.Option(help="LLM runs: evaluate the first N users only (0: all).")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate a run on the leave-one-out split under a protocol (LLM runs: rank and explain runs on c20, query
    runs on the full catalog)."""
    from llmrec.adapters.bundle import is_llm_run

    if is_llm_run(run):
        _eval_llm_run(run, protocol, split, engine, limit, as_json)
        return
    from llmrec.eval.runner import evaluate_run

    result = evaluate_run(run, protocol=protocol or "full", which=split, mask_history=mask_history)
    if as_json:
        emit_json(result)
        return
    echo(
        f"{result['model']} on {result['dataset']}: {result['protocol']} protocol, {result['split']} split, "
        f"mask_history={result['mask_history']}, {result['examples']} users"
    )
    for key in ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr@10", "hr@20", "ndcg@20"):
        echo(f"  {key:<8} {result[key]:.4f}")


def print_llm_result(result: dict[str, Any]) -> None:
    for key in ("hr@1", "ndcg@5", "hr@10", "ndcg@10", "valid_ratio", "kept_ratio", "well_formed"):
        if key in result:
            echo(f"  {key:<12} {result[key]:.4f}")
    if "answers" in result:
        echo(f"  answers      {result['answers']}")


def _eval_llm_run(run: Path, protocol: str | None, split: str, engine: str, limit: int, as_json: bool) -> None:
    from llmrec.adapters.bundle import load_bundle
    from llmrec.eval.llm import evaluate_llm_run

    own = "full" if load_bundle(run).task.task == "query" else "c20"
    if protocol not in (None, own):
        raise LlmrecError(f"{run} is an LLM-recommender run scored on the {own} protocol; use --protocol {own}")
    result = evaluate_llm_run(run, which=split, engine=engine, limit=limit)
    if as_json:
        emit_json(result)
        return
    echo(f"{run} on {own} ({result['split']} split, {result['examples']} users, {engine} engine):")
    print_llm_result(result)


def sft(
    recipe: Annotated[Path, typer.Option(help="Recipe YAML, or a shipped recipe's name (see adapters/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create (or to resume).")],
    dataset: Annotated[str | None, typer.Option(help="Override the recipe's dataset.")] = None,
    encoder: Annotated[str | None, typer.Option(help="Override the recipe's encoder run.")] = None,
    base_model: Annotated[str | None, typer.Option(help="Override the recipe's base LLM.")] = None,
    representation: Annotated[
        str | None, typer.Option(help="Override the item representation: none, id, text or hybrid.")
    ] = None,
    device: DeviceOption = None,
    max_steps: Annotated[int | None, typer.Option(help="Override trainer.max_steps (optimiser steps).")] = None,
    trainer: Annotated[
        list[str] | None,
        typer.Option(help="Set a trainer field (an SFTConfig field), KEY=VALUE; repeat for more."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in --out.")] = False,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="Score the trained run on c20.")] = True,
    split: Annotated[str, typer.Option(help="The split --eval scores: valid (default) or test.")] = "valid",
    as_json: JsonFlag = False,
) -> None:
    """Fine-tune an LLM recommender (LoRA + projector) from a recipe; flags override the recipe."""
    from llmrec.training.recipe import load_recipe
    from llmrec.training.sft import train_sft

    if split not in ("valid", "test"):
        raise LlmrecError(f"--split must be valid or test, got {split!r}")
    overrides = {
        "dataset": dataset, "encoder": encoder, "base_model": base_model, "representation": representation,
        "device": device,
    }  # fmt: skip
    settings = parse_settings(trainer, "--trainer")
    if max_steps is not None:
        settings["max_steps"] = max_steps
    loaded = load_recipe(recipe, overrides, settings)
    metrics = train_sft(loaded, out, resume=resume)
    if not metrics:  # not the main process of a data-parallel run
        return
    if evaluate and loaded.task.task == "rank":
        from llmrec.eval.llm import evaluate_llm_run

        metrics = {**metrics, f"c20_{split}": evaluate_llm_run(out, split)}
    if as_json:
        emit_json(metrics)
        return
    echo(
        f"trained {metrics['steps']} steps on {metrics['examples']} examples in {metrics['train_seconds']:.0f} s "
        f"(peak {metrics['peak_rss_mib']:.0f} MiB); run in {out}"
    )
    if f"c20_{split}" in metrics:
        echo(f"c20 {split}:")
        print_llm_result(metrics[f"c20_{split}"])


def recommend_command(
    run: Annotated[Path, typer.Argument(help="Run directory of `llmrec sft` or `llmrec rl`.")],
    user: Annotated[str, typer.Option("--user", "-u", help="Raw user id, or #N for internal id N.")],
    k: Annotated[int, typer.Option("-k", help="How many items.")] = 10,
    encoder: Annotated[str | None, typer.Option(help="Encoder run that retrieves the candidates.")] = None,
    engine: Annotated[str, typer.Option(help="hf or vllm.")] = "hf",
    as_json: JsonFlag = False,
) -> None:
    """Top-k for a user from an LLM recommender: candidates retrieved, then ranked by the LLM."""
    from llmrec.inference.recommender import LLMRecommender, recommend_llm

    recommender = LLMRecommender.from_run(run, engine=engine)
    try:
        result = recommend_llm(recommender, user, k=k, encoder_run=encoder)
    finally:
        recommender.close()
    if as_json:
        emit_json(result)
        return
    echo(
        f"user {result['raw_id']} ({result['history_length']} interactions), candidates from "
        f"{result['candidates_from']}, ranked by {run}:"
    )
    for key in ("rationale", "query"):  # what a reasoning or query-writing run wrote on the way
        if result.get(key):
            echo(f"{key}: {result[key]}")
    for row in result["recommendations"]:
        echo(f"  {row['rank']:>3}. {row['title']}  [{row['raw_id']}]  {row['score']:.3f}")
