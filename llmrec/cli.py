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
encoder_app = typer.Typer(help="Sequential encoders: train, recommend.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(encoder_app, name="encoder")

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


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    if not path.exists():
        raise LlmrecError(f"{path}: config file not found")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise LlmrecError(f"{where}: not valid YAML; fix the file") from None
    if not isinstance(values, dict) or set(values) - {"model", "encoder", "train"}:
        raise LlmrecError(f"{path}: expected a mapping with sections model, encoder and train")
    return values


@encoder_app.command("train")
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
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in --out.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Train an encoder with early stopping on validation NDCG@10 (leave-one-out split)."""
    from llmrec.encoders.train import train_encoder

    values = _read_yaml(config) if config else {}
    encoder_values = dict(values.get("encoder") or {})
    train_values = dict(values.get("train") or {})
    if loss is not None:
        encoder_values["loss"] = loss
    if epochs is not None:
        train_values["epochs"] = epochs
    if seed is not None:
        train_values["seed"] = seed
    name = model or values.get("model") or "sasrec"
    metrics = train_encoder(out, name, dataset, encoder_values, train_values, resume=resume)
    if as_json:
        emit_json(metrics)
    else:
        test = metrics["test"]
        _echo(
            f"{metrics['model']}: best epoch {metrics['best_epoch']} of {metrics['epochs']}, "
            f"test ndcg@10 {test['ndcg@10']:.4f} hr@10 {test['hr@10']:.4f} ({test['protocol']} ranking); run in {out}"
        )


@encoder_app.command("recommend")
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
    _echo(f"user {result['raw_id']} ({result['history_length']} interactions), {result['model']}:")
    for row in result["recommendations"]:
        _echo(f"  {row['rank']:>3}. {row['title']}  [{row['raw_id']}]  {row['score']:.3f}")


@app.command("eval")
def eval_run(
    run: Annotated[Path, typer.Argument(help="Run directory.")],
    protocol: Annotated[str, typer.Option(help="full, c20, sampled-N or sampled-N-pop.")] = "full",
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    mask_history: Annotated[bool, typer.Option(help="Full protocol: remove history items from the ranking.")] = False,
    engine: Annotated[str, typer.Option(help="LLM runs: the engine that serves them, hf or vllm.")] = "hf",
    limit: Annotated[int, typer.Option(help="LLM runs: evaluate the first N users only (0: all).")] = 0,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate a run on the leave-one-out split under a protocol (LLM runs: c20 only)."""
    from llmrec.training.bundle import is_sft_run

    if is_sft_run(run):
        _eval_llm_run(run, protocol, split, engine, limit, as_json)
        return
    from llmrec.eval.runner import evaluate_run

    result = evaluate_run(run, protocol=protocol, which=split, mask_history=mask_history)
    if as_json:
        emit_json(result)
        return
    _echo(
        f"{result['model']} on {result['dataset']}: {result['protocol']} protocol, {result['split']} split, "
        f"mask_history={result['mask_history']}, {result['examples']} users"
    )
    for key in ("hr@1", "hr@5", "hr@10", "ndcg@5", "ndcg@10", "mrr@10", "hr@20", "ndcg@20"):
        _echo(f"  {key:<8} {result[key]:.4f}")


def _eval_llm_run(run: Path, protocol: str, split: str, engine: str, limit: int, as_json: bool) -> None:
    from llmrec.eval.llm import evaluate_llm_run

    if protocol != "c20":
        raise LlmrecError(f"{run} is an LLM-recommender run: it ranks the c20 candidates; use --protocol c20")
    result = evaluate_llm_run(run, which=split, engine=engine, limit=limit)
    if as_json:
        emit_json(result)
        return
    _echo(f"{run} on c20 ({result['split']} split, {result['examples']} users, {engine} engine):")
    for key in ("hr@1", "ndcg@5", "ndcg@10", "valid_ratio"):
        _echo(f"  {key:<12} {result[key]:.4f}")


@app.command("sft")
def sft(
    recipe: Annotated[Path, typer.Option(help="Recipe YAML (see adapters/).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to create (or to resume).")],
    dataset: Annotated[str | None, typer.Option(help="Override the recipe's dataset.")] = None,
    encoder: Annotated[str | None, typer.Option(help="Override the recipe's encoder run.")] = None,
    base_model: Annotated[str | None, typer.Option(help="Override the recipe's base LLM.")] = None,
    representation: Annotated[
        str | None, typer.Option(help="Override the item representation: none, id, text or hybrid.")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Override trainer.max_steps (optimiser steps).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in --out.")] = False,
    evaluate: Annotated[bool, typer.Option("--eval/--no-eval", help="Score the trained run on c20 test.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Fine-tune an LLM recommender (LoRA + projector) from a recipe; flags override the recipe."""
    from llmrec.training.recipe import load_recipe
    from llmrec.training.sft import train_sft

    overrides = {"dataset": dataset, "encoder": encoder, "base_model": base_model, "representation": representation}
    loaded = load_recipe(recipe, overrides)
    if max_steps is not None:
        loaded.trainer.max_steps = max_steps
    metrics = train_sft(loaded, out, resume=resume)
    if not metrics:  # not the main process of a data-parallel run
        return
    if evaluate and loaded.task.task == "rank":
        from llmrec.eval.llm import evaluate_llm_run

        metrics = {**metrics, "c20_test": evaluate_llm_run(out, "test")}
    if as_json:
        emit_json(metrics)
        return
    _echo(
        f"trained {metrics['steps']} steps on {metrics['examples']} examples in {metrics['train_seconds']:.0f} s "
        f"(peak {metrics['peak_rss_mib']:.0f} MiB); run in {out}"
    )
    if "c20_test" in metrics:
        test = metrics["c20_test"]
        _echo(f"c20 test: hr@1 {test['hr@1']:.4f} ndcg@10 {test['ndcg@10']:.4f} valid_ratio {test['valid_ratio']:.3f}")


@app.command("recommend")
def recommend_command(
    run: Annotated[Path, typer.Argument(help="Run directory of `llmrec sft`.")],
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
    _echo(
        f"user {result['raw_id']} ({result['history_length']} interactions), candidates from "
        f"{result['candidates_from']}, ranked by {run}:"
    )
    for row in result["recommendations"]:
        _echo(f"  {row['rank']:>3}. {row['title']}  [{row['raw_id']}]  {row['score']:.3f}")


@app.command("batch")
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
    backend: Annotated[str, typer.Option(help="local, or ray (Ray Data over engine actors).")] = "local",
    actors: Annotated[int, typer.Option(help="ray backend: engine actors.")] = 1,
    as_json: JsonFlag = False,
) -> None:
    """Answer many rows with an LLM: free generation, grounded candidate ranking, or multi-path reasoning."""
    from dataclasses import replace

    from llmrec.inference.batch import BatchConfig, default_sampling, run_batch, run_batch_ray
    from llmrec.inference.engine import load_engine

    given = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens}
    sampling = replace(default_sampling(task), n=n, seed=seed, **{k: v for k, v in given.items() if v is not None})
    config = BatchConfig(
        task=task, input=input, out=out, dataset=dataset, ground=ground, chunk_size=chunk_size, resume=resume,
        paths=paths, sampling=sampling,
    )  # fmt: skip
    if backend not in ("local", "ray"):
        raise LlmrecError(f"--backend must be local or ray, got {backend!r}")
    config.check_paths()
    options: dict[str, Any] = {}
    if engine == "openai":
        if overflow is not None:
            raise LlmrecError(
                "--overflow does not apply to the openai engine: the server holds the tokenizer and rejects an "
                "over-long prompt, and that row goes to the errors file"
            )
        options["base_url"] = base_url
    else:
        options["overflow"] = overflow or "truncate"
        if lora is not None and engine in ("auto", "vllm"):
            from llmrec.inference.engine import vllm_available

            if engine == "vllm" or vllm_available():
                options["enable_lora"] = True
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
    _echo(
        f"{summary.rows_written} rows written to {out} ({summary.rows_skipped} already done, {summary.errors} errors "
        f"in {config.errors_path}); {summary.completion_tokens} tokens in {summary.seconds:.1f} s "
        f"({summary.tokens_per_second:.1f} tokens/s)"
    )


@app.command()
def demo(
    dataset: Annotated[str, typer.Option(help="Builtin name or dataset directory.")] = "ml-100k",
    users: Annotated[int, typer.Option(help="How many users' histories to show.")] = 3,
) -> None:
    """The main job on the bundled defaults: prepare models and data, train SASRec, recommend for a user."""
    from llmrec.demo import run_demo

    run_demo(dataset, users)


def main() -> None:
    """Entry point: run the app; a user-fixable error becomes one line on stderr and a non-zero exit code.

    Usage errors (a missing option, an unknown command or flag) exit 2, errors in the work itself exit 1.
    """
    from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer vendors click

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError:
        sys.exit(2)  # the help text has been printed
    except UsageError as err:
        command = err.ctx.command_path if err.ctx else "llmrec"
        print(f"llmrec: error: {command}: {err.format_message()} (see `{command} --help`)", file=sys.stderr)
        sys.exit(2)
    except LlmrecError as err:
        print(f"llmrec: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("llmrec: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
