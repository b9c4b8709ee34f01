"""``llmrec batch``: resumable batch LLM inference over JSONL or Parquet rows."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmrec.cli.common import JsonFlag, echo, emit_json
from llmrec.errors import LlmrecError


def batch(
    input: Annotated[Path, typer.Option("--input", help="Rows to answer: JSONL or Parquet, each with an 'id'.")],
    out: Annotated[Path, typer.Option("--out", help="Output JSONL (bad rows go to OUT.errors.jsonl).")],
    task: Annotated[str, typer.Option(help="generate, rank or reason.")] = "generate",
    engine: Annotated[str, typer.Option(help="auto, vllm, hf or openai.")] = "auto",
    model: Annotated[str | None, typer.Option(help="Model path or id (default: the bundled model).")] = None,
    lora: Annotated[Path | None, typer.Option(help="PEFT LoRA adapter directory applied to every row.")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset whose item ids/titles rows use (builtin name or directory).")
    ] = None,
    ground: Annotated[
        str, typer.Option(help="generate: none, or catalog (answers are titles of --dataset).")
    ] = "none",
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run: skip ids already in --out.")] = False,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Most new tokens per answer (default 64; reason: 128 per rationale).")
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(help="Sampling temperature, 0 = greedy (default 0; reason: 0.8).")
    ] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass (default 1; reason: 0.95).")] = None,
    n: Annotated[int, typer.Option("-n", help="Answers per row.")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    paths: Annotated[int, typer.Option(help="reason: reasoning paths per row (a row's 'paths' wins).")] = 4,
    chunk_size: Annotated[int, typer.Option(help="Rows per engine call and per atomic write.")] = 256,
    overflow: Annotated[
        str | None,
        typer.Option(
            help="Prompt over the context: truncate (from the left, default) or reject; the openai engine leaves "
            "it to the server, which rejects the row."
        ),
    ] = None,
    base_url: Annotated[str | None, typer.Option(help="openai engine: server URL (default $OPENAI_BASE_URL).")] = None,
    compiled: Annotated[
        bool,
        typer.Option(
            "--compile",
            help="vllm engine: run torch.compile graphs (vLLM's default on a GPU). On the CPU it adds about a minute "
            "to the start and pays back only on long bf16 jobs.",
        ),
    ] = False,
    backend: Annotated[str, typer.Option(help="local, or ray (Ray Data over engine actors).")] = "local",
    actors: Annotated[int, typer.Option(help="ray backend: engine actors.")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """Answer many rows with an LLM: free generation, grounded candidate ranking, or multi-path reasoning."""
    from dataclasses import replace

    from llmrec.inference.batch import BatchConfig, default_sampling, run_batch, run_batch_ray
    from llmrec.inference.registry import batch_engine_options, load_engine

    given = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
    sampling = replace(default_sampling(task), n=n, seed=seed, **{k: v for k, v in given.items() if v is not None})
    config = BatchConfig(
        task=task, input=input, out=out, dataset=dataset, ground=ground, chunk_size=chunk_size, resume=resume,
        paths=paths, sampling=sampling,
    )  # fmt: skip
    if backend not in ("local", "ray"):
        raise LlmrecError(f"--backend must be local or ray, got {backend!r}")
    config.check_paths()
    options = batch_engine_options(engine, str(lora) if lora else None, overflow, base_url, compiled)
    adapter = str(lora) if lora else None
    if backend == "ray":
        summary = run_batch_ray(config, engine, model, options, adapter, actors=actors)
    else:
        llm = load_engine(engine, model, **options)
        try:
            summary = run_batch(config, llm, adapter)
        finally:
            llm.close()
    result = {"out": str(out), "errors_file": str(config.errors_path), **summary.to_dict()}
    if as_json:
        emit_json(result)
        return
    echo(
        f"{summary.rows_written} rows written to {out} ({summary.rows_skipped} already done, {summary.errors} errors "
        f"in {config.errors_path}); {summary.completion_tokens} tokens in {summary.seconds:.1f} s "
        f"({summary.tokens_per_second:.1f} tokens/s)"
    )
