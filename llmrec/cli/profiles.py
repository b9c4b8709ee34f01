"""``llmrec profiles``: build evolving user profiles from a dataset's reviews, show them, update them."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from llmrec.cli.common import DatasetArg, DeviceOption, JsonFlag, echo, emit_json, group
from llmrec.errors import LlmrecError

app = group("Evolving user profiles from reviews: build them from a dataset, show and update them.")
DbOption = Annotated[str, typer.Option("--db", help="Profile store: sqlite:///path/profiles.db or postgresql://...")]
EngineOption = Annotated[str, typer.Option(help="Extraction engine: auto, vllm, hf or openai.")]
ModelOption = Annotated[str | None, typer.Option(help="LLM path or id (default: the bundled model).")]
BudgetOption = Annotated[int, typer.Option(help="Token budget of a profile (the LLM's tokenizer).")]


def _extractor(engine: str, model: str | None, device: str | None, needed: bool = True) -> Any:
    """The extractor over ``engine``; with no review text to read (``needed`` false) no engine is started."""
    from llmrec.inference.registry import engine_name, load_engine
    from llmrec.profiles.extractor import ReviewExtractor

    if not needed:
        return ReviewExtractor(None)
    options = {"device": device} if device and engine_name(engine) == "hf" else {}
    return ReviewExtractor(load_engine(engine, model, **options))


def _close(extractor: Any) -> None:
    if extractor.engine is not None:
        extractor.engine.close()


def _show(profile: Any, history: list[Any] | None) -> None:
    from llmrec.profiles.schema import diff_profiles, render_profile

    echo(f"user {profile.user}: version {profile.version}, {profile.reviews} reviews, {len(profile.facts)} facts")
    for line in render_profile(profile).splitlines():
        echo(f"  {line}")
    if history:
        previous = None
        for version in history:
            change = diff_profiles(previous, version)
            added = ", ".join(change["added"]) or "-"
            removed = ", ".join(change["removed"]) or "-"
            echo(f"  v{version.version}: added {added}; removed {removed}")
            previous = version


@app.command("build")
def profiles_build(
    dataset: DatasetArg,
    db: DbOption,
    engine: EngineOption = "auto",
    model: ModelOption = None,
    device: DeviceOption = None,
    batch_size: Annotated[int, typer.Option(help="Reviews per engine call.")] = 32,
    budget: BudgetOption = 200,
    users: Annotated[int, typer.Option(help="Only the first N users (0: all).")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue a build into a store that holds profiles already.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Apply every review of DATASET, each user's in time order, to the profiles in --db (idempotent by review)."""
    from llmrec.data.builtin import load_dataset
    from llmrec.profiles.build import build_profiles, load_updater, pending
    from llmrec.profiles.extractor import clauses
    from llmrec.profiles.reviews import dataset_reviews
    from llmrec.profiles.store import open_store

    data = load_dataset(dataset)
    reviews = dataset_reviews(data)
    if users:
        chosen = set(data.users.sort_values("user_id")["raw_id"].astype(str).head(users))
        reviews = [r for r in reviews if r.user in chosen]
    store = open_store(db, load_updater(model, budget, device or "auto"))
    try:
        if store.users() and not resume:
            raise LlmrecError(f"{db} holds profiles already; pass --resume to continue building into it")
        # a finished build run again, or one whose remaining reviews carry no text, starts no engine
        needed = any(clauses(r.text) for r in pending(reviews, store))
        extractor = _extractor(engine, model, device, needed=needed)
        try:
            summary = build_profiles(reviews, store, extractor, batch_size)
        finally:
            _close(extractor)
    finally:
        store.close()
    result = {"db": db, "dataset": data.name, **summary.to_dict()}
    if as_json:
        emit_json(result)
        return
    echo(
        f"{summary.applied} reviews applied ({summary.skipped} applied before, {summary.failed} failed and recorded "
        f"for the next build) for {summary.users} users in {summary.seconds:.0f} s into {db}"
    )


@app.command("show")
def profiles_show(
    db: DbOption,
    user: Annotated[str, typer.Option("--user", "-u", help="The user's id (the raw id of the dataset).")],
    history: Annotated[bool, typer.Option(help="Every version, with what each one changed.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """A user's profile: its facts and text (with --history, every version and its changes)."""
    from llmrec.profiles.store import open_store

    store = open_store(db)
    try:
        profile = store.get(user)
        versions = store.history(user) if history else None
    finally:
        store.close()
    if profile is None:
        raise LlmrecError(f"{db} has no profile for user {user!r}; build one with `llmrec profiles build`")
    if as_json:
        payload = profile.to_dict()
        if versions is not None:
            payload["history"] = [v.to_dict() for v in versions]
        emit_json(payload)
        return
    _show(profile, versions)


@app.command("update")
def profiles_update(
    db: DbOption,
    user: Annotated[str, typer.Option("--user", "-u", help="The user's id.")],
    review: Annotated[
        str,
        typer.Option(help='The review as JSON: {"item": "Title", "rating": 5, "text": "...", "id": "review id"}.'),
    ],
    dataset: Annotated[
        str | None, typer.Option(help="Dataset whose item (by title or #id) the review is about.")
    ] = None,
    engine: EngineOption = "auto",
    model: ModelOption = None,
    device: DeviceOption = None,
    budget: BudgetOption = 200,
    as_json: JsonFlag = False,
) -> None:
    """Apply one new review to a user's profile (a new version; the same review id is applied once)."""
    from llmrec.profiles.build import load_updater
    from llmrec.profiles.extractor import clauses
    from llmrec.profiles.reviews import review_from_json
    from llmrec.profiles.store import open_store

    parsed = review_from_json(review, user, dataset)
    store = open_store(db, load_updater(model, budget, device or "auto"))
    try:
        extractor = _extractor(engine, model, device, needed=bool(clauses(parsed.text)))
        try:
            facts = extractor.extract([parsed])[0]
        finally:
            _close(extractor)
        if isinstance(facts, Exception):
            store.record_failure(parsed.review_id, user, str(facts))
            raise LlmrecError(f"{facts}; recorded for the next build")
        before = store.get(user)
        version = before.version if before else 0
        profile = store.apply(user, facts, expected_version=version, review_id=parsed.review_id)
    finally:
        store.close()
    if as_json:
        emit_json({**profile.to_dict(), "facts_extracted": len(facts)})
        return
    _show(profile, None)
    echo(f"({len(facts)} facts from review {parsed.review_id}: {json.dumps([f.aspect for f in facts])})")
