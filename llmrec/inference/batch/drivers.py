"""The loops that run a batch job: locally on one engine, or on Ray Data over engine actors.

Both start the same way (:func:`_start`: check the files, find the finished ids, open the errors file) and write
the same way (one append per chunk of answers, then the summary's counts).
"""

from __future__ import annotations

import json
import time
from typing import Any

from llmrec.catalog.catalog import Catalog
from llmrec.errors import LlmrecError
from llmrec.inference.batch.config import BatchConfig
from llmrec.inference.batch.rows import InputRow, append_rows, finished_ids, pending_chunks
from llmrec.inference.batch.summary import BatchSummary
from llmrec.inference.batch.tasks import run_chunk
from llmrec.inference.engine import Engine
from llmrec.progress import progress_bar


def load_catalog(dataset: str | None) -> Catalog | None:
    """The catalog of ``--dataset`` (builtin name or directory), or ``None``."""
    if not dataset:
        return None
    from llmrec.data.builtin import load_dataset

    return Catalog.from_dataset(load_dataset(dataset))


def _start(config: BatchConfig) -> set[str]:
    """Check the files, create the output (keeping it when resuming) and an empty errors file; the finished ids."""
    config.check_paths()
    config.out.parent.mkdir(parents=True, exist_ok=True)
    done = finished_ids(config.out) if config.resume else set()
    config.out.touch()
    config.errors_path.write_text("")
    return done


def _write(
    config: BatchConfig, summary: BatchSummary, outputs: list[dict[str, Any]], errors: list[dict[str, Any]]
) -> None:
    append_rows(config.out, outputs)
    append_rows(config.errors_path, sorted(errors, key=lambda e: e["row"]))
    summary.add(outputs, len(errors))


def run_batch(config: BatchConfig, engine: Engine, lora: str | None = None) -> BatchSummary:
    """Run a batch job locally with ``engine``; returns the summary (also the errors file is written)."""
    done = _start(config)
    catalog = load_catalog(config.dataset)
    summary = BatchSummary()
    start = time.perf_counter()
    with progress_bar(None, desc=f"batch {config.task}", unit="row") as bar:
        for todo, skipped, duplicates in pending_chunks(config, done):
            summary.rows_skipped += skipped
            outputs, errors = run_chunk(engine, config, catalog, todo, lora) if todo else ([], [])
            _write(config, summary, outputs, duplicates + errors)
            summary.seconds = time.perf_counter() - start
            bar.update(len(todo) + skipped + len(duplicates))
            bar.set_postfix(tok_s=f"{summary.tokens_per_second:.0f}", errors=summary.errors)
    summary.seconds = time.perf_counter() - start
    return summary


class RayEngineWorker:
    """A Ray Data actor: builds its own engine once, then answers batches of rows with ``run_chunk``."""

    def __init__(self, engine: str, model: str | None, options: dict[str, Any], config: BatchConfig, lora: str | None):
        from llmrec.inference.registry import load_engine

        self.engine = load_engine(engine, model, **options)
        self.config = config
        self.catalog = load_catalog(config.dataset)
        self.lora = lora

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        rows = [
            InputRow(int(number), json.loads(fields), str(unreadable) or None)
            for number, fields, unreadable in zip(batch["number"], batch["row"], batch["unreadable"], strict=True)
        ]
        outputs, errors = run_chunk(self.engine, self.config, self.catalog, rows, self.lora)
        kinds = ["output"] * len(outputs) + ["error"] * len(errors)
        return {"kind": kinds, "json": [json.dumps(x, ensure_ascii=False) for x in [*outputs, *errors]]}


def _ray_row(row: InputRow) -> dict[str, Any]:
    """A row as Ray Data carries it to the workers (an unreadable row too: the worker reports it)."""
    fields = json.dumps(row.fields, ensure_ascii=False)
    return {"number": row.number, "row": fields, "unreadable": row.unreadable or ""}


def run_batch_ray(
    config: BatchConfig,
    engine: str,
    model: str | None,
    options: dict[str, Any],
    lora: str | None = None,
    actors: int = 1,
    cpus_per_actor: float = 1.0,
) -> BatchSummary:
    """The same job on Ray Data: ``map_batches`` over ``actors`` engine actors, results written chunk by chunk.

    Connects to the cluster ``ray.init()`` finds (``RAY_ADDRESS``), or starts a local one. Finished ids,
    duplicate ids and the errors file work exactly as in the local run; the pending rows are handed to Ray as
    one dataset, and every result batch is appended (one write each) as it streams back.
    """
    try:
        import ray
    except ImportError:
        raise LlmrecError("--backend ray needs Ray: pip install 'llmrec[ray]'") from None
    done = _start(config)
    summary = BatchSummary()
    pending: list[dict[str, Any]] = []
    for todo, skipped, duplicates in pending_chunks(config, done):
        summary.rows_skipped += skipped
        _write(config, summary, [], duplicates)
        pending.extend(_ray_row(row) for row in todo)
    start = time.perf_counter()
    if pending:
        if not ray.is_initialized():
            ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        dataset = ray.data.from_items(pending).map_batches(
            RayEngineWorker,
            fn_constructor_kwargs={
                "engine": engine,
                "model": model,
                "options": options,
                "config": config,
                "lora": lora,
            },  # fmt: skip
            batch_size=config.chunk_size,
            concurrency=actors,
            num_cpus=cpus_per_actor,
        )
        with progress_bar(len(pending), desc=f"batch {config.task} (ray)", unit="row") as bar:
            for batch in dataset.iter_batches(batch_size=config.chunk_size, batch_format="numpy"):
                pairs = list(zip(batch["kind"], batch["json"], strict=True))
                outputs = [json.loads(j) for k, j in pairs if k == "output"]
                errors = [json.loads(j) for k, j in pairs if k == "error"]
                _write(config, summary, outputs, errors)
                summary.seconds = time.perf_counter() - start
                bar.update(len(pairs))
                bar.set_postfix(tok_s=f"{summary.tokens_per_second:.0f}", errors=summary.errors)
    summary.seconds = time.perf_counter() - start
    return summary
