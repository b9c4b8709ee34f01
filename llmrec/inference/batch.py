"""Resumable batch inference over JSONL or Parquet rows: ``llmrec batch``.

Rows stream in chunks. Each row needs a unique ``id``; by task it also needs:

- ``generate``: ``prompt`` (text, no chat template) or ``messages`` (chat); with ``--dataset`` and
  ``--ground catalog`` the answer is decoded through the whole-catalog title trie and resolved to an item.
- ``rank``: ``history`` and ``candidates``, item ids of ``--dataset`` or titles (titles alone work without a
  dataset: the row's candidates are then its catalog). The answer is one candidate, generated under the
  candidate constraint, plus the ``ranking`` of all candidates by the model's log-probability of each as the
  answer.
- ``reason``: as ``rank``, plus optional ``paths`` (reasoning paths; default ``--paths``).

Output rows (JSONL) keep the ``id`` and hold the texts, the resolved ``item_id``/``title`` (and ``ranking``;
``in_history`` when the answer repeats a history item), and ``usage``. The run's summary adds ``valid_ratio``,
``duplicate_ratio`` and ``in_history_ratio`` over the grounded answers.

Every chunk's rows are appended with one write and flushed, so a crash loses at most the chunk in flight;
``--resume`` drops a torn last line, skips finished ids and never writes an id twice. A bad row (missing field,
unknown item, prompt over the context with ``--overflow reject``, a request the server rejects) goes to
``OUT.errors.jsonl`` with its row number and the batch goes on; rows that failed are retried by ``--resume``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.errors import InputError, LlmrecError
from llmrec.inference.engine import Engine, Request, RequestRejected, SamplingConfig, ScoringUnavailable
from llmrec.inference.grounding import Catalog, Grounding
from llmrec.prompts import render

TASKS = ("generate", "rank", "reason")


GREEDY_PATHS = (
    "reason samples several paths, and greedy decoding (temperature 0) would make them identical; "
    "give a temperature above 0 (the default for reason is 0.8) or 1 path"
)


def default_sampling(task: str) -> SamplingConfig:
    """Sampling of a task when none is given: greedy answers, or diverse rationales for ``reason``."""
    if task == "reason":
        return SamplingConfig(temperature=0.8, top_p=0.95, max_new_tokens=128)
    return SamplingConfig()


@dataclass
class BatchConfig:
    """What ``llmrec batch`` runs.

    Job: ``task``, ``input``, ``out``, ``dataset`` (item ids and titles for rank/reason, catalog for
    grounding), ``ground`` (``none`` or ``catalog``, for ``generate``), ``chunk_size`` (rows per engine call and
    per write), ``resume``. Prompts: ``template`` (for rank; reason uses ``reasoning.template``) and
    ``max_history`` (most recent history items shown). Sampling: ``sampling`` (default: greedy, 64 new tokens;
    for ``reason``: temperature 0.8, top-p 0.95 and 128 tokens per rationale); reasoning: ``paths``.
    """

    task: str
    input: Path
    out: Path
    dataset: str | None = None
    ground: str = "none"
    chunk_size: int = 256
    resume: bool = False
    template: str = "rank_candidates"
    max_history: int = 20
    paths: int = 4
    sampling: SamplingConfig | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise LlmrecError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.ground not in ("none", "catalog"):
            raise LlmrecError(f"--ground must be none or catalog, got {self.ground!r}")
        if self.ground == "catalog" and not self.dataset:
            raise LlmrecError("--ground catalog needs --dataset: the catalog to ground the answers to")
        if self.chunk_size < 1:
            raise LlmrecError(f"--chunk-size must be at least 1, got {self.chunk_size}")
        if self.sampling is None:
            self.sampling = default_sampling(self.task)
        if self.task == "reason" and self.paths > 1 and self.sampling.greedy:
            raise LlmrecError(GREEDY_PATHS)
        self.input, self.out = Path(self.input), Path(self.out)

    def check_paths(self) -> None:
        """Fail before any engine starts: the input must exist, the output only when resuming."""
        if not self.input.is_file():
            raise LlmrecError(f"{self.input}: no such input file")
        if self.out.exists() and not self.resume:
            raise LlmrecError(f"{self.out} exists; pass --resume to continue it, or choose another --out")

    @property
    def errors_path(self) -> Path:
        """Where bad rows are reported: ``OUT.errors.jsonl`` beside the output."""
        return self.out.with_name(self.out.name + ".errors.jsonl")


def read_rows(path: Path, chunk_size: int) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """Chunks of ``(row number, row)`` from JSONL (line numbers) or Parquet (1-based row numbers), streamed."""
    if not path.exists():
        raise LlmrecError(f"{path}: no such input file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_size):
            rows = batch.to_pylist()
            yield [(number + i + 1, row) for i, row in enumerate(rows)]
            number += len(rows)
        return
    chunk: list[tuple[int, dict[str, Any]]] = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                row = {"__error__": f"not valid JSON ({error.msg} at column {error.colno})"}
            if not isinstance(row, dict):
                row = {"__error__": "not a JSON object"}
            chunk.append((number, row))
            if len(chunk) == chunk_size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def finished_ids(out: Path) -> set[str]:
    """Ids already in the output; a torn last line (a crash mid-write) is cut off the file first."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with out.open("r+b") as handle:
            handle.truncate(end)
    done = set()
    for number, line in enumerate(data[:end].splitlines(), start=1):
        if line.strip():
            try:
                done.add(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError):
                raise InputError(
                    out, "not an output row of llmrec batch", "remove the file or the line", number
                ) from None
    return done


class RowError(Exception):
    """A row that cannot run; reported in the errors file, the batch goes on."""


class Items:
    """Resolves a row's item references (ids of the dataset, or titles) to item ids of a catalog."""

    def __init__(self, catalog: Catalog | None) -> None:
        self.catalog = catalog

    def resolve(self, values: Any, what: str) -> tuple[Catalog, list[int]]:
        if not isinstance(values, list | tuple) or not all(isinstance(v, int | str) for v in values):
            raise RowError(f"{what} must be a list of item ids or titles")
        values = list(values)
        if self.catalog is None:
            if not all(isinstance(v, str) for v in values):
                raise RowError(f"{what} holds item ids, which need --dataset; or give titles")
            return Catalog(range(1, len(values) + 1), values, name="row"), list(range(1, len(values) + 1))
        ids = []
        for value in values:
            if isinstance(value, int) and not isinstance(value, bool):
                if value not in self.catalog:
                    raise RowError(f"{what}: no item with id {value} in {self.catalog.name}")
                ids.append(value)
            else:
                found = self.catalog.resolve(str(value))
                # Only the title itself (or its normalised form) names an item: "Toy Story 5" is not Toy Story.
                if found.item_id is None or found.resolved_by not in ("exact", "normalised"):
                    raise RowError(f"{what}: no item titled {value!r} in {self.catalog.name}")
                ids.append(found.item_id)
        return self.catalog, ids


def _rank_inputs(row: dict[str, Any], items: Items, max_history: int) -> tuple[Catalog, list[int], list[int]]:
    for name in ("history", "candidates"):
        if name not in row:
            raise RowError(f"missing field {name!r}")
    if items.catalog is None:
        history_titles = row["history"]
        catalog, candidates = items.resolve(row["candidates"], "candidates")
        if not all(isinstance(t, str) for t in history_titles):
            raise RowError("history holds item ids, which need --dataset; or give titles")
        # Without a dataset, history titles join the row's catalog after the candidates.
        extended = Catalog(
            range(1, len(candidates) + len(history_titles) + 1), [*catalog.titles, *history_titles], name="row"
        )
        history = list(range(len(candidates) + 1, len(candidates) + len(history_titles) + 1))
        return extended, history[-max_history:], candidates
    catalog, history = items.resolve(row["history"], "history")
    _, candidates = items.resolve(row["candidates"], "candidates")
    if not candidates:
        raise RowError("empty candidate list")
    return catalog, history[-max_history:], candidates


def _item_out(catalog: Catalog, item_id: int | None) -> int | None:
    return item_id if catalog.name != "row" else None


def run_chunk(
    engine: Engine,
    config: BatchConfig,
    catalog: Catalog | None,
    rows: list[tuple[int, dict[str, Any]]],
    lora: str | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Answer one chunk of rows; returns (output rows, error rows). Bad rows never stop the chunk."""
    items = Items(catalog)
    outputs: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    accepted: list[tuple[int, dict[str, Any], Any]] = []
    for number, row in rows:
        try:
            if "__error__" in row:
                raise RowError(row["__error__"])
            if "id" not in row or row["id"] is None:
                raise RowError("missing field 'id'")
            accepted.append((number, row, _prepare(row, config, items, lora)))
        except (RowError, LlmrecError) as error:
            errors.append({"row": number, "id": row.get("id"), "error": str(error)})
    if not accepted:
        return outputs, errors
    if config.task == "reason":
        return _run_reason(engine, config, accepted, outputs, errors)
    accepted, results = _each_or_alone(
        accepted, lambda group: engine.generate([p["request"] for _, _, p in group], config.sampling), errors
    )
    scores = None
    if config.task == "rank":
        titles = [[p["catalog"].title(c) for c in p["candidates"]] for _, _, p in accepted]
        try:
            scores = engine.score([p["request"] for _, _, p in accepted], titles)
        except ScoringUnavailable:  # the answer stands alone; the output says why there is no ranking
            scores = None
    for index, ((_, row, prepared), result) in enumerate(zip(accepted, results, strict=True)):
        record: dict[str, Any] = {"id": row["id"]}
        completions = result.completions
        record["text"] = completions[0].text
        if len(completions) > 1:
            record["texts"] = [c.text for c in completions]
        grounded = prepared["request"].grounding is not None
        if grounded:
            record_catalog = prepared["catalog"]
            record["item_id"] = _item_out(record_catalog, completions[0].item_id)
            record["title"] = completions[0].title
            record["resolved_by"] = completions[0].resolved_by
            if "history" in prepared:
                record["in_history"] = completions[0].item_id in prepared["history"]
            if len(completions) > 1:
                record["items"] = [
                    {"item_id": _item_out(record_catalog, c.item_id), "title": c.title, "resolved_by": c.resolved_by}
                    for c in completions
                ]
        record["logprob"] = completions[0].logprob
        if config.task == "rank" and scores is None:
            record["ranking"] = None
            record.setdefault("warnings", []).append("no ranking: this engine cannot score candidates")
        if scores is not None:
            ranked = sorted(zip(prepared["candidates"], scores[index], strict=True), key=lambda kv: -kv[1])
            record["ranking"] = [
                {"item_id": _item_out(prepared["catalog"], i), "title": prepared["catalog"].title(i), "logprob": s}
                for i, s in ranked
            ]
        record["usage"] = result.usage
        if result.warnings:
            record["warnings"] = [*result.warnings, *record.get("warnings", [])]
        outputs.append(record)
    return outputs, errors


def _prepare(row: dict[str, Any], config: BatchConfig, items: Items, lora: str | None) -> dict[str, Any]:
    if config.task == "generate":
        if ("prompt" in row) == ("messages" in row):
            raise RowError("needs exactly one of 'prompt' or 'messages'")
        grounding = Grounding(items.catalog) if config.ground == "catalog" and items.catalog is not None else None
        if "prompt" in row:
            if not isinstance(row["prompt"], str):
                raise RowError("'prompt' must be a string")
            request = Request(prompt=row["prompt"], grounding=grounding, lora=lora)
        else:
            request = Request(messages=row["messages"], grounding=grounding, lora=lora)
        return {"request": request, "catalog": items.catalog}
    catalog, history, candidates = _rank_inputs(row, items, config.max_history)
    paths = row.get("paths", config.paths)
    if not isinstance(paths, int) or paths < 1:
        raise RowError(f"'paths' must be a positive integer, got {paths!r}")
    text = render(
        config.template,
        history=[catalog.title(i) for i in history],
        candidates=[catalog.title(i) for i in candidates],
    )
    grounding = Grounding(catalog, candidates=candidates, history=history)
    request = Request(messages=[{"role": "user", "content": text}], grounding=grounding, lora=lora)
    return {"request": request, "catalog": catalog, "history": history, "candidates": candidates, "paths": paths}


def _each_or_alone(
    accepted: list[tuple[int, dict[str, Any], Any]],
    answer: Callable[[list[tuple[int, dict[str, Any], Any]]], list[Any]],
    errors: list[dict[str, Any]],
) -> tuple[list[tuple[int, dict[str, Any], Any]], list[Any]]:
    """``answer`` the rows in one call; if the engine rejects a request, answer them one by one so that only the
    rejected rows go to ``errors``. Returns the rows that were answered and their results."""
    try:
        return accepted, answer(accepted)
    except RequestRejected:
        pass
    kept, results = [], []
    for entry in accepted:
        try:
            results.extend(answer([entry]))
        except RequestRejected as error:
            errors.append({"row": entry[0], "id": entry[1]["id"], "error": str(error)})
        else:
            kept.append(entry)
    return kept, results


def _run_reason(
    engine: Engine,
    config: BatchConfig,
    accepted: list[tuple[int, dict[str, Any], Any]],
    outputs: list[dict[str, Any]],
    errors: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from llmrec.inference.reasoning import ReasoningConfig, ReasoningTask, reason

    by_paths: dict[int, list[tuple[int, dict[str, Any], Any]]] = {}
    for entry in accepted:
        by_paths.setdefault(entry[2]["paths"], []).append(entry)
    answered: dict[str, dict[str, Any]] = {}
    for paths, group in by_paths.items():
        sampling = config.sampling
        if paths > 1 and sampling.greedy:
            errors.extend({"row": n, "id": row["id"], "error": GREEDY_PATHS} for n, row, _ in group)
            continue
        settings = ReasoningConfig(
            paths=paths,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_reasoning_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )

        def answer(rows: list[tuple[int, dict[str, Any], Any]], settings: ReasoningConfig = settings) -> list[Any]:
            tasks = [
                ReasoningTask(p["catalog"], p["history"], p["candidates"], lora=p["request"].lora) for _, _, p in rows
            ]
            return reason(engine, tasks, settings)

        group, results = _each_or_alone(group, answer, errors)
        for (_, row, prepared), result in zip(group, results, strict=True):
            catalog = prepared["catalog"]
            answered[str(row["id"])] = {
                "id": row["id"],
                "item_id": _item_out(catalog, result.top.item_id),
                "title": result.top.title,
                "ranking": [
                    {"item_id": _item_out(catalog, r.item_id), "title": r.title, "score": r.score, "votes": r.votes}
                    for r in result.ranking
                ],
                "in_history": result.top.item_id in prepared["history"],
                "rationale": result.rationale,
                "paths": [
                    {
                        "rationale": p.rationale,
                        "item_id": _item_out(catalog, p.item_id),
                        "title": p.title,
                        "logprob": p.logprob,
                        "weight": p.weight,
                        "kept": p.kept,
                        "pruned_by": p.pruned_by,
                    }
                    for p in result.paths
                ],
                "usage": result.usage,
            }
    outputs.extend(answered[str(row["id"])] for _, row, _ in accepted if str(row["id"]) in answered)
    return outputs, errors


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows as JSONL in one write, flushed to disk."""
    if not rows:
        return
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    with path.open("a") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


@dataclass
class BatchSummary:
    """What a batch run did."""

    rows_written: int = 0
    rows_skipped: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    answers: int = 0  # grounded answers (item recommendations), and of those:
    valid: int = 0  # resolved to a catalog item
    duplicates: int = 0  # repeating an item of the same row
    in_history: int = 0  # an item the row's history holds

    def add(self, outputs: list[dict[str, Any]], errors: int) -> None:
        """Count a chunk's output rows and errors."""
        self.rows_written += len(outputs)
        self.errors += errors
        for row in outputs:
            self.prompt_tokens += row["usage"]["prompt_tokens"]
            self.completion_tokens += row["usage"]["completion_tokens"]
            if "title" not in row:  # not grounded
                continue
            titles = [i["title"] for i in row["items"]] if "items" in row else [row["title"]]
            valid = [t for t in titles if t is not None]
            self.answers += len(titles)
            self.valid += len(valid)
            self.duplicates += len(valid) - len(set(valid))
            self.in_history += int(row.get("in_history", False))

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of the run."""
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "rows_written": self.rows_written,
            "rows_skipped": self.rows_skipped,
            "errors": self.errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_second": round(self.tokens_per_second, 2),
            **(
                {
                    "valid_ratio": round(self.valid / self.answers, 4),
                    "duplicate_ratio": round(self.duplicates / self.valid, 4) if self.valid else 0.0,
                    "in_history_ratio": round(self.in_history / self.valid, 4) if self.valid else 0.0,
                }
                if self.answers
                else {}
            ),
        }


def load_catalog(dataset: str | None) -> Catalog | None:
    """The catalog of ``--dataset`` (builtin name or directory), or ``None``."""
    if not dataset:
        return None
    from llmrec.data.builtin import load_dataset

    return Catalog.from_dataset(load_dataset(dataset))


def pending_chunks(
    config: BatchConfig, done: set[str]
) -> Iterator[tuple[list[tuple[int, dict[str, Any]]], int, list]]:
    """Input chunks minus finished ids and repeated ids: ``(rows to run, rows skipped, duplicate-id errors)``."""
    seen: set[str] = set()
    for chunk in read_rows(config.input, config.chunk_size):
        todo, skipped, duplicates = [], 0, []
        for number, row in chunk:
            key = str(row.get("id")) if isinstance(row, dict) and "id" in row else None
            if key is not None and key in seen:
                duplicates.append({"row": number, "id": row["id"], "error": "duplicate id (an earlier row has it)"})
                continue
            if key is not None:
                seen.add(key)
            if key is not None and key in done:
                skipped += 1
                continue
            todo.append((number, row))
        yield todo, skipped, duplicates


def run_batch(config: BatchConfig, engine: Engine, lora: str | None = None) -> BatchSummary:
    """Run a batch job locally with ``engine``; returns the summary (also the errors file is written)."""
    from llmrec.progress import progress_bar

    config.check_paths()
    config.out.parent.mkdir(parents=True, exist_ok=True)
    done = finished_ids(config.out) if config.resume else set()
    config.out.touch()
    catalog = load_catalog(config.dataset)
    summary = BatchSummary()
    config.errors_path.write_text("")
    start = time.perf_counter()
    with progress_bar(None, desc=f"batch {config.task}", unit="row") as bar:
        for todo, skipped, duplicates in pending_chunks(config, done):
            summary.rows_skipped += skipped
            outputs, errors = run_chunk(engine, config, catalog, todo, lora) if todo else ([], [])
            errors = duplicates + errors
            append_rows(config.out, outputs)
            append_rows(config.errors_path, sorted(errors, key=lambda e: e["row"]))
            summary.add(outputs, len(errors))
            summary.seconds = time.perf_counter() - start
            bar.update(len(todo) + skipped + len(duplicates))
            bar.set_postfix(tok_s=f"{summary.tokens_per_second:.0f}", errors=summary.errors)
    summary.seconds = time.perf_counter() - start
    return summary


class RayEngineWorker:
    """A Ray Data actor: builds its own engine once, then answers batches of rows with ``run_chunk``."""

    def __init__(self, engine: str, model: str | None, options: dict[str, Any], config: BatchConfig, lora: str | None):
        from llmrec.inference.engine import load_engine

        self.engine = load_engine(engine, model, **options)
        self.config = config
        self.catalog = load_catalog(config.dataset)
        self.lora = lora

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        rows = [(int(n), json.loads(r)) for n, r in zip(batch["number"], batch["row"], strict=True)]
        outputs, errors = run_chunk(self.engine, self.config, self.catalog, rows, self.lora)
        kinds = ["output"] * len(outputs) + ["error"] * len(errors)
        return {"kind": kinds, "json": [json.dumps(x, ensure_ascii=False) for x in [*outputs, *errors]]}


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
    from llmrec.progress import progress_bar

    try:
        import ray
    except ImportError:
        raise LlmrecError("--backend ray needs Ray: pip install 'llmrec[ray]'") from None
    config.check_paths()
    config.out.parent.mkdir(parents=True, exist_ok=True)
    done = finished_ids(config.out) if config.resume else set()
    config.out.touch()
    config.errors_path.write_text("")
    summary = BatchSummary()
    pending: list[dict[str, Any]] = []
    for todo, skipped, duplicates in pending_chunks(config, done):
        summary.rows_skipped += skipped
        summary.errors += len(duplicates)
        append_rows(config.errors_path, duplicates)
        pending.extend({"number": n, "row": json.dumps(row, ensure_ascii=False)} for n, row in todo)
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
            },
            batch_size=config.chunk_size,
            concurrency=actors,
            num_cpus=cpus_per_actor,
        )
        with progress_bar(len(pending), desc=f"batch {config.task} (ray)", unit="row") as bar:
            for batch in dataset.iter_batches(batch_size=config.chunk_size, batch_format="numpy"):
                pairs = list(zip(batch["kind"], batch["json"], strict=True))
                outputs = [json.loads(j) for k, j in pairs if k == "output"]
                errors = [json.loads(j) for k, j in pairs if k == "error"]
                append_rows(config.out, outputs)
                append_rows(config.errors_path, errors)
                summary.add(outputs, len(errors))
                summary.seconds = time.perf_counter() - start
                bar.update(len(pairs))
                bar.set_postfix(tok_s=f"{summary.tokens_per_second:.0f}", errors=summary.errors)
    summary.seconds = time.perf_counter() - start
    return summary
