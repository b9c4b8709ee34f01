"""Answering one chunk of batch rows: each row prepared into a request, the chunk answered by the engine, each
answer shaped into an output row. Bad rows never stop the chunk: they become error rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmrec.catalog.catalog import Catalog
from llmrec.catalog.grounding import Grounding
from llmrec.errors import LlmrecError
from llmrec.inference.batch.config import GREEDY_PATHS, BatchConfig
from llmrec.inference.batch.items import RowError, RowItems, row_items
from llmrec.inference.batch.rows import InputRow
from llmrec.inference.engine import Completion, Engine, Request, RequestRejected, Result, ScoringUnavailable
from llmrec.prompts import render


@dataclass
class Prepared:
    """A row ready to run: its request, and for rank and reason its items and reasoning paths."""

    row: InputRow
    request: Request
    items: RowItems | None = None
    paths: int = 1


def prepare(row: InputRow, config: BatchConfig, catalog: Catalog | None, lora: str | None) -> Prepared:
    """The row's request; a row that cannot run raises :class:`RowError` (or ``LlmrecError``)."""
    if row.unreadable:
        raise RowError(row.unreadable)
    if row.id is None:
        raise RowError("missing field 'id'")
    fields = row.fields
    if config.task == "generate":
        if ("prompt" in fields) == ("messages" in fields):
            raise RowError("needs exactly one of 'prompt' or 'messages'")
        grounding = Grounding(catalog) if config.ground == "catalog" and catalog is not None else None
        if "prompt" in fields:
            if not isinstance(fields["prompt"], str):
                raise RowError("'prompt' must be a string")
            return Prepared(row, Request(prompt=fields["prompt"], grounding=grounding, lora=lora))
        return Prepared(row, Request(messages=fields["messages"], grounding=grounding, lora=lora))
    items = row_items(fields, catalog, config.max_history)
    paths = fields.get("paths", config.paths)
    if not isinstance(paths, int) or paths < 1:
        raise RowError(f"'paths' must be a positive integer, got {paths!r}")
    text = render(
        config.template,
        history=[items.catalog.title(i) for i in items.history],
        candidates=[items.catalog.title(i) for i in items.candidates],
    )
    grounding = Grounding(items.catalog, candidates=items.candidates, history=items.history)
    request = Request(messages=[{"role": "user", "content": text}], grounding=grounding, lora=lora)
    return Prepared(row, request, items, paths)


def run_chunk(
    engine: Engine, config: BatchConfig, catalog: Catalog | None, rows: list[InputRow], lora: str | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Answer one chunk of rows; returns (output rows, error rows)."""
    errors: list[dict[str, Any]] = []
    accepted: list[Prepared] = []
    for row in rows:
        try:
            accepted.append(prepare(row, config, catalog, lora))
        except (RowError, LlmrecError) as error:
            errors.append(row.error(str(error)))
    if not accepted:
        return [], errors
    if config.task == "reason":
        return _reason(engine, config, accepted, errors), errors
    return _generate_or_rank(engine, config, accepted, errors), errors


def _each_or_alone(
    accepted: list[Prepared], answer: Callable[[list[Prepared]], list[Any]], errors: list[dict[str, Any]]
) -> tuple[list[Prepared], list[Any]]:
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
            errors.append(entry.row.error(str(error)))
        else:
            kept.append(entry)
    return kept, results


def _generate_or_rank(
    engine: Engine, config: BatchConfig, accepted: list[Prepared], errors: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    accepted, results = _each_or_alone(
        accepted, lambda group: engine.generate([p.request for p in group], config.sampling), errors
    )
    scores = None
    if config.task == "rank":
        titles = [[p.items.catalog.title(c) for c in p.items.candidates] for p in accepted if p.items is not None]
        try:
            scores = engine.score([p.request for p in accepted], titles)
        except ScoringUnavailable:  # the answer stands alone; the output says why there is no ranking
            scores = None
    outputs = []
    for index, (prepared, result) in enumerate(zip(accepted, results, strict=True)):
        record = _answer_record(prepared, result)
        if config.task == "rank" and prepared.items is not None:
            if scores is None:
                record["ranking"] = None
                record.setdefault("warnings", []).append("no ranking: this engine cannot score candidates")
            else:
                items = prepared.items
                ranked = sorted(zip(items.candidates, scores[index], strict=True), key=lambda kv: -kv[1])
                record["ranking"] = [
                    {"item_id": items.item_id(i), "title": items.catalog.title(i), "logprob": s} for i, s in ranked
                ]
        record["usage"] = result.usage
        if result.warnings:
            record["warnings"] = [*result.warnings, *record.get("warnings", [])]
        outputs.append(record)
    return outputs


def _answer_record(prepared: Prepared, result: Result) -> dict[str, Any]:
    """An output row's answer fields: text (and texts), the item it resolved to when grounded, its log-prob."""
    completions = result.completions
    record: dict[str, Any] = {"id": prepared.row.id, "text": completions[0].text}
    if len(completions) > 1:
        record["texts"] = [c.text for c in completions]
    if prepared.request.grounding is not None:
        items = prepared.items

        def item_id(completion: Completion) -> int | None:
            return items.item_id(completion.item_id) if items is not None else completion.item_id

        first = completions[0]
        record.update(item_id=item_id(first), title=first.title, resolved_by=first.resolved_by)
        if items is not None:
            record["in_history"] = first.item_id in items.history
        if len(completions) > 1:
            record["items"] = [
                {"item_id": item_id(c), "title": c.title, "resolved_by": c.resolved_by} for c in completions
            ]
    record["logprob"] = completions[0].logprob
    return record


def _reason(
    engine: Engine, config: BatchConfig, accepted: list[Prepared], errors: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    from llmrec.inference.reasoning import ReasoningConfig, ReasoningTask, reason

    by_paths: dict[int, list[Prepared]] = {}
    for entry in accepted:
        by_paths.setdefault(entry.paths, []).append(entry)
    answered: dict[str, dict[str, Any]] = {}
    sampling = config.sampling
    for paths, group in by_paths.items():
        if paths > 1 and sampling.greedy:
            errors.extend(p.row.error(GREEDY_PATHS) for p in group)
            continue
        settings = ReasoningConfig(
            paths=paths,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_reasoning_tokens=sampling.max_new_tokens,
            seed=sampling.seed,
        )

        def answer(rows: list[Prepared], settings: ReasoningConfig = settings) -> list[Any]:
            tasks = [
                ReasoningTask(p.items.catalog, p.items.history, p.items.candidates, lora=p.request.lora)
                for p in rows
                if p.items is not None
            ]
            return reason(engine, tasks, settings)

        group, results = _each_or_alone(group, answer, errors)
        for prepared, result in zip(group, results, strict=True):
            items = prepared.items
            assert items is not None
            answered[str(prepared.row.key)] = {
                "id": prepared.row.id,
                "item_id": items.item_id(result.top.item_id),
                "title": result.top.title,
                "ranking": [
                    {"item_id": items.item_id(r.item_id), "title": r.title, "score": r.score, "votes": r.votes}
                    for r in result.ranking
                ],
                "in_history": result.top.item_id in items.history,
                "rationale": result.rationale,
                "paths": [
                    {
                        "rationale": p.rationale,
                        "item_id": items.item_id(p.item_id),
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
    return [answered[str(p.row.key)] for p in accepted if str(p.row.key) in answered]
