"""``llmrec rl``: RL alignment of an LLM recommender with TRL's GRPO on recommendation rewards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmrec.cli.common import DeviceOption, JsonFlag, echo, emit_json, parse_settings
from llmrec.cli.llm import print_llm_result
from llmrec.errors import LlmrecError


def rl(
    recipe: Annotated[Path, typer.Option(help="RL recipe YAML, or a shipped recipe's name (see adapters/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create (or to resume).")],
    init: Annotated[
        Path | None, typer.Option(help="A finished text-only SFT or RL run of the same base model to continue.")
    ] = None,
    dataset: Annotated[str | None, typer.Option(help="Override the recipe's dataset.")] = None,
    base_model: Annotated[str | None, typer.Option(help="Override the recipe's base LLM.")] = None,
    device: DeviceOption = None,
    max_steps: Annotated[int | None, typer.Option(help="Override trainer.max_steps (optimiser steps).")] = None,
    trainer: Annotated[
        list[str] | None,
        typer.Option(help="Set a trainer field (a GRPOConfig field), KEY=VALUE; repeat for more."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in --out.")] = False,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="Score the trained run on --split.")] = True,
    split: Annotated[str, typer.Option(help="The split --eval scores: valid (default) or test.")] = "valid",
    limit: Annotated[int, typer.Option(help="--eval: the first N users only (0: all).")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Align an LLM recommender with GRPO on recommendation rewards (LoRA); flags override the recipe."""
    from llmrec.training.rl import train_rl
    from llmrec.training.rl_recipe import load_rl_recipe

    if split not in ("valid", "test"):
        raise LlmrecError(f"--split must be valid or test, got {split!r}")
    if resume and init is not None:
        raise LlmrecError("--init starts a run; a resumed run continues from its own checkpoint (drop --init)")
    settings = parse_settings(trainer, "--trainer")
    if max_steps is not None:
        settings["max_steps"] = max_steps
    overrides = {"dataset": dataset, "base_model": base_model, "device": device}
    loaded = load_rl_recipe(recipe, overrides, settings)
    metrics = train_rl(loaded, out, init=init, resume=resume)
    if evaluate:
        from llmrec.eval.llm import evaluate_llm_run

        result = evaluate_llm_run(out, split, limit=limit)
        metrics = {**metrics, f"{result['protocol']}_{split}": result}
    if as_json:
        emit_json(metrics)
        return
    echo(
        f"trained {metrics['steps']} GRPO steps on {metrics['examples']} prompts in {metrics['train_seconds']:.0f} s "
        f"(peak {metrics['peak_rss_mib']:.0f} MiB); run in {out}"
    )
    for key, value in metrics.items():
        if key.endswith(f"_{split}") and isinstance(value, dict):
            echo(f"{key.replace('_', ' ')} ({value['examples']} users):")
            print_llm_result(value)
