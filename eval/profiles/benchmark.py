"""Profile benchmark: PURE's continuous sequential task on real reviews, and profiles on ML-100K's ratings.

    .venv/bin/python eval/profiles/benchmark.py                          # writes eval/profiles/RESULTS.md
    .venv/bin/python eval/profiles/benchmark.py --steps-per-user 3       # each user's last three steps only
    .venv/bin/python eval/profiles/benchmark.py --sections speed         # only the vLLM-vs-transformers build speed

**Reviews** (the Amazon Reviews 2023 sample of ``../shared/data``, or ``--data``): each user's reviews arrive in
time order. Profiles are built from all of them through ``--engine`` (one version per review); before step ``t``
the profile of the first ``t - 1`` reviews recommends, and the item of review ``t`` is ranked among 20 candidates
(it and 19 items of its main category the user never reviewed, drawn with a fixed seed per step). Rows: the LLM
ranking the candidates' titles with the user's recent item titles (no profile), with all earlier reviews (cut to
the context), with the last ``k`` reviews, with the profile (and the recent titles), all on ``--rank-engine``
with titles cut to 60 characters; and dense (MiniLM) rankings of the recent titles, of the profile text and of
both. Users are split in two halves by a hash of their id: choices are
made on the validation half, and the test half is scored once, as it came.

**ML-100K** (ratings only: profiles from ratings and the movies' attributes, no LLM): on the leave-one-out split's
c20 candidates, the dense profile, SASRec, and their blend, the blend's weight chosen on the validation split.

**Speed**: the same reviews extracted through transformers and through vLLM, one after the other in one run.

Differences against the no-profile row are paired over users (each user's steps averaged), with 95% bootstrap
intervals; "beats" means the interval is above zero. Work (the imported data, profile stores, engines' outputs) is
kept in ``--work`` (default ``$LLMREC_HOME/bench-profiles``): a profile build resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[2] / "shared" / "data" / "amazon-2023-sample"
RECENT = 10  # item titles shown as the recent history
TITLE = 60  # characters of an item title shown to (and scored as the answer of) the LLM: Amazon titles run long
LAST_K = 3  # reviews shown by the last-k row
CANDIDATES = 20
LLM_SHOWS = ("titles", "whole", "last-k", "profile")  # what the LLM rows show: recent titles, reviews, the profile
SEED = 2024
BLEND_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
DISLIKE_WEIGHTS = (0.0, 0.5, 1.0)  # how much a disliked aspect's match takes off, in the facets row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="Amazon 2023 layout: reviews.jsonl, meta.jsonl.")
    parser.add_argument("--engine", default="vllm", choices=["hf", "vllm"], help="The engine extracting profiles.")
    parser.add_argument("--rank-engine", default="hf", choices=["hf", "vllm"], help="The engine of the LLM rows.")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--sections", default="reviews,ml100k,speed")
    parser.add_argument("--speed-reviews", type=int, default=48, help="Reviews extracted by each engine for speed.")
    parser.add_argument("--steps-per-user", type=int, default=0, help="Only each user's last N steps (0: all).")
    parser.add_argument("--users", type=int, default=0, help="Only the first N users of the reviews (0: all).")
    parser.add_argument(
        "--splits", default="valid,test", choices=["valid,test", "valid"],
        help="valid: the reviews section alone, on validation users only, printed (RESULTS.md and results.json "
        "untouched), for choices made while developing a row; test is scored once a row is frozen.",
    )  # fmt: skip
    parser.add_argument(
        "--dense-only", action="store_true",
        help="With --splits valid: leave the LLM rows out (minutes per row on CPU), for choices among dense rows.",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--kept", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    if args.dense_only and args.splits != "valid":
        raise SystemExit("--dense-only is for --splits valid: a reported run scores every row")
    from llmrec.paths import llmrec_home

    work = args.work or llmrec_home() / "bench-profiles"
    work.mkdir(parents=True, exist_ok=True)
    kept = json.loads(args.kept.read_text()) if args.kept.exists() else {}
    command = "python eval/profiles/benchmark.py " + " ".join(sys.argv[1:])
    stamp = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "command": command.strip(), "machine": machine()}
    sections = ["reviews"] if args.splits == "valid" else args.sections.split(",")  # valid: nothing kept is touched
    if "speed" in sections:
        kept["speed"] = {**speed(args.data, work, args.speed_reviews), **stamp}
        save(args.kept, kept)
    if "reviews" in sections:
        splits = tuple(args.splits.split(","))
        shows = () if args.dense_only else LLM_SHOWS
        section = reviews_section(
            args.data, work, args.engine, args.rank_engine, args.steps_per_user, args.users, splits, shows
        )
        if splits == ("valid",):
            print(render({"reviews": {**section, **stamp}}, splits))
            return
        kept["reviews"] = {**section, **stamp}
        save(args.kept, kept)
    if "ml100k" in sections:
        kept["ml100k"] = {**ml100k_section(work), **stamp}
        save(args.kept, kept)
    args.out.write_text(render(kept))
    print(args.out.read_text())


def machine() -> str:
    import os

    return f"{len(os.sched_getaffinity(0))} CPU cores ({platform.machine()})"


def save(path: Path, kept: dict[str, Any]) -> None:
    path.write_text(json.dumps(kept, indent=1, default=float) + "\n")


def import_reviews(data: Path, work: Path) -> Any:
    """The review sample as a dataset directory in ``work`` (imported once)."""
    from llmrec.data.dataset import read_dataset
    from llmrec.data.importers import import_dataset

    out = work / "reviews-dataset"
    if (out / "meta.json").exists():
        return read_dataset(out)
    return import_dataset(data / "reviews.jsonl", "amazon", out, meta=data / "meta.jsonl", quiet=True)


def load_engine_for(name: str) -> Any:
    from llmrec.inference.registry import load_engine

    return load_engine(name, None, **({"kv_cache_gib": 2.0} if name == "vllm" else {}))


# -- speed


def speed(data: Path, work: Path, count: int) -> dict[str, Any]:
    """Seconds per review of extraction through transformers and through vLLM on the same reviews (the engines'
    start-up not counted), and the share of answers that parse."""
    from llmrec.profiles.extractor import ReviewExtractor, clauses
    from llmrec.profiles.reviews import dataset_reviews

    dataset = import_reviews(data, work)
    reviews = [r for r in dataset_reviews(dataset) if clauses(r.text)][:count]
    out: dict[str, Any] = {"reviews": len(reviews)}
    for name in ("hf", "vllm"):
        engine = load_engine_for(name)
        try:
            extractor = ReviewExtractor(engine)
            started = time.perf_counter()
            results = extractor.extract(reviews)
            seconds = time.perf_counter() - started
        finally:
            engine.close()
        parsed = sum(isinstance(r, list) for r in results)
        out[name] = {"seconds_per_review": seconds / len(reviews), "parsed": parsed / len(reviews)}
        print(f"speed: {name} {seconds / len(reviews):.2f} s/review, {parsed}/{len(reviews)} parsed", file=sys.stderr)
    out["speedup"] = out["hf"]["seconds_per_review"] / out["vllm"]["seconds_per_review"]
    return out


# -- the continuous task on reviews


def build_store(dataset: Any, work: Path, engine_name: str, users: set[str]) -> tuple[Any, dict[str, Any]]:
    """Every review of ``users`` applied to a profile store of ``work`` (a build stopped part-way resumes)."""
    from llmrec.profiles.build import BuildSummary, build_profiles, load_updater, pending
    from llmrec.profiles.extractor import ReviewExtractor
    from llmrec.profiles.reviews import dataset_reviews
    from llmrec.profiles.store import open_store

    store = open_store(f"sqlite:///{work / f'profiles-{engine_name}.db'}", load_updater())
    reviews = [r for r in dataset_reviews(dataset) if r.user in users]
    if not pending(reviews, store):  # built before: no engine to start
        summary = BuildSummary(skipped=len(reviews), users=len({r.user for r in reviews}))
    else:
        engine = load_engine_for(engine_name)
        try:
            summary = build_profiles(reviews, store, ReviewExtractor(engine))
        finally:
            engine.close()
    timing = work / f"build-{engine_name}.json"  # the first build's timing is the one that extracted every review
    if summary.applied + summary.failed and not timing.exists():
        timing.write_text(json.dumps(summary.to_dict()))
    built = json.loads(timing.read_text()) if timing.exists() else summary.to_dict()
    return store, {**built, "failed_now": len(store.failures())}


def split_of(user: str) -> str:
    """``valid`` or ``test``: half the users each, by a hash of the id (the same on every machine)."""
    return "valid" if int(hashlib.sha256(user.encode()).hexdigest(), 16) % 2 == 0 else "test"


def steps(dataset: Any, store: Any, per_user: int, users: set[str]) -> list[dict[str, Any]]:
    """Every prediction step: the user, the profile before it, the earlier reviews, the target and candidates."""
    from llmrec.profiles.reviews import dataset_reviews
    from llmrec.profiles.schema import render_profile

    items = dataset.items.set_index("item_id")
    category = items["main_category"].astype(str).to_dict() if "main_category" in items else {}
    by_category: dict[str, list[int]] = {}
    for item, name in category.items():
        by_category.setdefault(name, []).append(int(item))
    by_user: dict[str, list[Any]] = {}
    for review in dataset_reviews(dataset):
        if review.user in users:
            by_user.setdefault(review.user, []).append(review)
    out = []
    for user, mine in sorted(by_user.items()):
        versions = {p.reviews: p for p in store.history(user)}
        seen_items = {r.item_id for r in mine}
        positions = list(range(1, len(mine)))
        for t in positions[-per_user:] if per_user else positions:
            target = mine[t]
            earlier = mine[:t]
            profile = max((p for n, p in versions.items() if n <= t), key=lambda p: p.reviews, default=None)
            rng = np.random.default_rng([SEED, int(hashlib.sha256(user.encode()).hexdigest()[:8], 16), t])
            pool = [i for i in by_category.get(category.get(target.item_id, ""), []) if i not in seen_items]
            if len(pool) < CANDIDATES - 1:  # a small category: the rest from the whole catalog
                others = [i for i in range(1, dataset.num_items + 1) if i not in seen_items and i not in pool]
                if len(pool) + len(others) < CANDIDATES - 1:
                    raise SystemExit(f"user {user} leaves fewer than {CANDIDATES - 1} unreviewed items to draw from")
                pool += list(rng.choice(others, CANDIDATES - 1 - len(pool), replace=False))
            negatives = [int(i) for i in rng.choice(pool, CANDIDATES - 1, replace=False)]
            candidates = negatives + [target.item_id]
            rng.shuffle(candidates)
            out.append({
                "user": user, "split": split_of(user), "step": t,
                "profile": render_profile(profile), "facts": profile, "history": [r.item_id for r in earlier],
                "reviews": [f"{r.title[:TITLE]} ({r.rating:g} stars): {r.text}" for r in earlier],
                "candidates": candidates, "target": candidates.index(target.item_id),
            })  # fmt: skip
    return out


def ranks_of(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    from llmrec.ranking.metrics import target_ranks

    return target_ranks(scores, targets)


def llm_row(engine: Any, dataset: Any, rows: list[dict[str, Any]], show: str) -> tuple[np.ndarray, list[int]]:
    """Scores of an LLM row (``show``: titles, whole, last-k or profile) and its prompts' token counts."""
    from llmrec.profiles.recommend import llm_scores, profile_prompt, prompt_tokens
    from llmrec.progress import progress_bar

    titles = [str(t)[:TITLE] for t in dataset.titles]
    prompts, candidates = [], []
    for row in rows:
        recent = [titles[i] for i in row["history"][-RECENT:]]
        options = [titles[i] for i in row["candidates"]]
        if show == "titles":
            prompts.append(profile_prompt(options, history=recent))
        elif show == "whole":
            prompts.append(profile_prompt(options, reviews=row["reviews"]))
        elif show == "last-k":
            prompts.append(profile_prompt(options, reviews=row["reviews"][-LAST_K:]))
        else:
            prompts.append(profile_prompt(options, profile=row["profile"], history=recent))
        candidates.append(options)
    scores = []
    with progress_bar(len(prompts), f"LLM row {show}", unit="step") as bar:
        for start in range(0, len(prompts), 16):
            scores.append(llm_scores(engine, prompts[start : start + 16], candidates[start : start + 16]))
            bar.update(len(prompts[start : start + 16]))
    return np.concatenate(scores), prompt_tokens(engine, prompts)


def paired(rows: list[dict[str, Any]], ranks: np.ndarray, base: np.ndarray, metric: str) -> dict[str, Any]:
    """The row minus the base over users (each user's steps averaged), with its bootstrap interval."""
    from llmrec.ranking.intervals import paired_bootstrap, per_user

    users = sorted({r["user"] for r in rows})
    index = {u: i for i, u in enumerate(users)}
    ours, theirs = np.zeros(len(users)), np.zeros(len(users))
    counts = np.zeros(len(users))
    for row, a, b in zip(rows, per_user(ranks, metric), per_user(base, metric), strict=True):
        ours[index[row["user"]]] += a
        theirs[index[row["user"]]] += b
        counts[index[row["user"]]] += 1
    return paired_bootstrap(ours / counts, theirs / counts).to_dict()


def reviews_section(
    data: Path,
    work: Path,
    engine_name: str,
    rank_engine: str,
    per_user: int,
    limit: int,
    splits: tuple[str, ...] = ("valid", "test"),
    shows: tuple[str, ...] = LLM_SHOWS,
) -> dict[str, Any]:
    from llmrec.adapters.representations import load_embedder, text_item_vectors
    from llmrec.profiles.recommend import DenseProfiles, blend
    from llmrec.ranking.metrics import ranking_metrics

    dataset = import_reviews(data, work)
    users = set(dataset.users.sort_values("user_id")["raw_id"].astype(str).head(limit or None))
    store, build = build_store(dataset, work, engine_name, users)
    all_rows = steps(dataset, store, per_user, users)
    store.close()
    vectors, _ = text_item_vectors(dataset)
    dense = DenseProfiles(load_embedder(), vectors)
    engine = load_engine_for(rank_engine if shows else "hf")  # without LLM rows: only its tokenizer counts
    tokenizer = engine.tokenizer
    results: dict[str, Any] = {"build": build, "steps": {}, "rows": {}, "engines": [engine_name, rank_engine]}
    try:
        for split in splits:
            rows = [r for r in all_rows if r["split"] == split]
            targets = np.array([r["target"] for r in rows])
            candidates = np.array([r["candidates"] for r in rows])
            titles = dataset.titles
            scored: dict[str, tuple[np.ndarray, list[int]]] = {}
            for show in shows:
                # each row takes minutes on CPU: kept in the work directory so a stopped run picks up where it was
                cached = work / f"scores-{rank_engine}-{engine_name}-{split}-{show}-{per_user}-{limit}.npz"
                if cached.exists():
                    saved = np.load(cached)
                    scored[f"llm-{show}"] = (saved["scores"], saved["tokens"].tolist())
                    continue
                scored[f"llm-{show}"] = llm_row(engine, dataset, rows, show)
                partial = cached.with_suffix(".partial.npz")
                np.savez(partial, scores=scored[f"llm-{show}"][0], tokens=np.array(scored[f"llm-{show}"][1]))
                partial.replace(cached)
            recent_text = ["; ".join(str(titles[i]) for i in r["history"][-RECENT:]) for r in rows]
            profile_text = [r["profile"] for r in rows]
            both = [f"{p}\n{t}" for p, t in zip(profile_text, recent_text, strict=True)]
            for name, texts in (("dense-titles", recent_text), ("dense-profile", profile_text), ("dense-both", both)):
                scored[name] = (dense.scores(texts, candidates), [count(tokenizer, t) for t in texts])
            profiles = [r["facts"] for r in rows]
            titles_scores, profile_scores = scored["dense-titles"][0], scored["dense-profile"][0]
            if split == "valid":  # the rows' settings, chosen here and kept for test
                facets = {d: dense.facet_scores(profiles, candidates, d) for d in DISLIKE_WEIGHTS}
                results["dislike_weight"] = max(DISLIKE_WEIGHTS, key=lambda d: ndcg10(facets[d], targets))
                facet_scores = facets[results["dislike_weight"]]
                results["blend_weight"] = best_weight(titles_scores, profile_scores, targets)
                results["facets_blend_weight"] = best_weight(titles_scores, facet_scores, targets)
            else:
                facet_scores = dense.facet_scores(profiles, candidates, results["dislike_weight"])
            tokens = [a + b for a, b in zip(scored["dense-titles"][1], scored["dense-profile"][1], strict=True)]
            scored["dense-blend"] = (blend(titles_scores, profile_scores, results["blend_weight"]), tokens)
            scored["dense-facets"] = (facet_scores, scored["dense-profile"][1])
            weight = results["facets_blend_weight"]
            scored["dense-facets-blend"] = (blend(titles_scores, facet_scores, weight), tokens)
            results["steps"][split] = {"steps": len(rows), "users": len({r["user"] for r in rows})}
            for name, (scores, tokens) in scored.items():
                ranks = ranks_of(scores, targets)
                # each row against the same ranker without a profile: the LLM's titles row, or the dense one
                base = ranks_of(scored["llm-titles" if name.startswith("llm") else "dense-titles"][0], targets)
                entry = {**ranking_metrics(ranks, (1, 5, 10)), "prompt_tokens": float(np.mean(tokens))}
                entry["vs_no_profile"] = {m: paired(rows, ranks, base, m) for m in ("hr@1", "ndcg@10")}
                results["rows"].setdefault(name, {})[split] = entry
    finally:
        engine.close()
    profile_rows = [name for name in LABELS if name in PROFILE_ROWS and name in results["rows"]]
    results["chosen"] = max(profile_rows, key=lambda name: results["rows"][name]["valid"]["ndcg@10"])
    return results


def ndcg10(scores: np.ndarray, targets: np.ndarray) -> float:
    from llmrec.ranking.metrics import ranking_metrics

    return ranking_metrics(ranks_of(scores, targets), (10,))["ndcg@10"]


def best_weight(first: np.ndarray, second: np.ndarray, targets: np.ndarray) -> float:
    """The weight on ``second`` in its blend with ``first`` (of ``BLEND_WEIGHTS``) with the best NDCG@10."""
    from llmrec.profiles.recommend import blend

    return max(BLEND_WEIGHTS, key=lambda w: ndcg10(blend(first, second, w), targets))


def count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0


# -- ML-100K: profiles from ratings


def ml100k_section(work: Path) -> dict[str, Any]:
    """The dense rating profile, SASRec and their blend on ML-100K's leave-one-out c20 candidates."""
    import torch

    from llmrec.adapters.representations import load_embedder, text_item_vectors
    from llmrec.data.builtin import load_dataset
    from llmrec.data.splits import leave_one_out_split
    from llmrec.encoders.run import load_best
    from llmrec.encoders.train import train_encoder
    from llmrec.profiles.build import build_profiles, load_updater
    from llmrec.profiles.extractor import ReviewExtractor
    from llmrec.profiles.recommend import DenseProfiles, blend
    from llmrec.profiles.reviews import dataset_reviews
    from llmrec.profiles.schema import render_profile
    from llmrec.profiles.store import open_store
    from llmrec.ranking.metrics import ranking_metrics
    from llmrec.ranking.protocols import c20_candidates, history_matrix

    dataset = load_dataset("ml-100k")
    split = leave_one_out_split(dataset)
    sasrec = work / "ml100k-sasrec"
    if not (sasrec / "metrics.json").exists():
        train_encoder(sasrec, "sasrec", "ml-100k", resume=(sasrec / "config.yaml").exists())
    encoder = load_best(sasrec).eval()
    store = open_store(f"sqlite:///{work / 'profiles-ml100k.db'}", load_updater())
    build_profiles(dataset_reviews(dataset), store, ReviewExtractor(None), batch_size=512)
    vectors, _ = text_item_vectors(dataset)
    dense = DenseProfiles(load_embedder(), vectors)
    raw = dataset.users.set_index("user_id")["raw_id"].astype(str)
    out: dict[str, Any] = {"rows": {}}
    scores: dict[str, dict[str, np.ndarray]] = {}
    targets: dict[str, np.ndarray] = {}
    for which in ("valid", "test"):
        examples = split.eval_set(which)
        candidates = c20_candidates(split, which, dataset.num_items, dataset.path / "splits")
        targets[which] = (candidates == examples.targets[:, None]).argmax(1)
        texts = []
        for user, cutoff in zip(examples.users, examples.cutoffs, strict=True):
            versions = {p.reviews: p for p in store.history(raw[int(user)])}
            texts.append(render_profile(versions.get(int(cutoff))))  # the profile of the ratings before the target
        histories = torch.from_numpy(history_matrix(split, examples, encoder.config.max_len))
        with torch.inference_mode():
            encoder_scores = encoder.score(histories, torch.from_numpy(candidates)).double().numpy()
        scores[which] = {"dense-profile": dense.scores(texts, candidates), "sasrec": encoder_scores}
    store.close()

    def valid_ndcg(weight: float) -> float:
        mixed = blend(scores["valid"]["sasrec"], scores["valid"]["dense-profile"], weight)
        return ranking_metrics(ranks_of(mixed, targets["valid"]), (10,))["ndcg@10"]

    chosen = max(BLEND_WEIGHTS, key=valid_ndcg)
    out["blend_weight"] = chosen
    from llmrec.ranking.intervals import paired_bootstrap, per_user

    for which in ("valid", "test"):
        rows = dict(scores[which])
        rows["blend"] = blend(rows["sasrec"], rows["dense-profile"], chosen)
        base = ranks_of(rows["sasrec"], targets[which])
        for name, value in rows.items():
            ranks = ranks_of(value, targets[which])
            entry = ranking_metrics(ranks, (1, 5, 10))
            entry["vs_sasrec"] = {
                m: paired_bootstrap(per_user(ranks, m), per_user(base, m)).to_dict() for m in ("hr@1", "ndcg@10")
            }
            out["rows"].setdefault(name, {})[which] = entry
    return out


# -- the report


LABELS = {
    "llm-titles": "no profile: LLM, recent item titles",
    "llm-whole": "LLM, every earlier review (cut to the context)",
    "llm-last-k": f"LLM, the last {LAST_K} reviews",
    "llm-profile": "profile: LLM, profile + recent item titles",
    "dense-titles": "dense (MiniLM), recent item titles",
    "dense-profile": "profile: dense (MiniLM), profile text",
    "dense-both": "profile: dense (MiniLM), profile + recent item titles",
    "dense-blend": "profile: dense (MiniLM), blend of the recent-titles and profile scores",
    "dense-facets": "profile: dense (MiniLM), each aspect on its own (best like minus best dislike)",
    "dense-facets-blend": "profile: dense (MiniLM), blend of the recent-titles and per-aspect scores",
}
PROFILE_ROWS = ("llm-profile", "dense-profile", "dense-both", "dense-blend", "dense-facets", "dense-facets-blend")


def render(kept: dict[str, Any], splits: tuple[str, ...] = ("valid", "test")) -> str:
    lines = ["# Profile benchmark", ""]
    if "reviews" in kept:
        section = kept["reviews"]
        build = section["build"]
        lines += [
            "## Continuous sequential task on reviews (PURE's)",
            "",
            f"Measured {section['date']} on {section['machine']} by `{section['command']}`. Each user's reviews "
            "arrive in time order; before each step the profile of the earlier reviews recommends and the next "
            f"item is ranked among {CANDIDATES} candidates (it and 19 unreviewed items of its main category). "
            "Users are split in halves by a hash of their id; nothing was chosen on the test half. LLM rows: the "
            "bundled SmolLM2-135M-Instruct scoring each candidate title as the complete answer (`profile_prompt`). "
            "Prompt tokens: per request, the LLM's tokenizer (for dense rows: the embedded text). Each row is "
            "compared with the same ranker without a profile (LLM rows with the LLM's recent-titles row, dense rows "
            "with the dense recent-titles row), paired over users, with 95% bootstrap intervals. The blend "
            f"standardises both dense scores per step, weight {section.get('blend_weight', '–')} on the profile, "
            "chosen on validation NDCG@10. The per-aspect row embeds each fact's aspect on its own and scores an "
            "item by its best cosine with a liked or looked-for aspect minus "
            f"{section.get('dislike_weight', '–')} times its best cosine with a disliked one; its blend puts weight "
            f"{section.get('facets_blend_weight', '–')} on it; both chosen on validation NDCG@10. Disclosure: the "
            "blend rows and the per-aspect rows (and their grids) were added after the test figures of the other "
            "rows had been read; their settings were chosen on validation, but their test figures are not "
            "held-out ones.",
            "",
            f"Profiles: {build['applied']} reviews applied, {build['failed']} extractions failed "
            f"({build['failed_now']} still failed), {build['extract_seconds_per_review']:.2f} s of extraction per "
            f"review. The profile row chosen on validation NDCG@10: **{LABELS[section['chosen']]}**"
            + (
                f"; on {splits[-1]} it uses {tokens_share(section, splits[-1]):.0%} of the prompt tokens of the "
                "every-earlier-review row."
                if "llm-whole" in section["rows"]
                else " (the LLM rows were left out)."
            ),
            "",
        ]
        for split in splits:
            info = section["steps"][split]
            lines += [
                f"### {split} users ({info['users']} users, {info['steps']} steps)",
                "",
                "| row | HR@1 | NDCG@5 | NDCG@10 | prompt tokens | HR@1 vs no profile, same ranker "
                "| NDCG@10 vs no profile, same ranker |",
                "| --- | ---: | ---: | ---: | ---: | --- | --- |",
            ]
            for name, label in LABELS.items():
                if name not in section["rows"]:
                    continue
                e = section["rows"][name][split]
                vs = e["vs_no_profile"]
                lines.append(
                    f"| {label} | {e['hr@1']:.4f} | {e['ndcg@5']:.4f} | {e['ndcg@10']:.4f} "
                    f"| {e['prompt_tokens']:.0f} | {interval(vs['hr@1'])} | {interval(vs['ndcg@10'])} |"
                )
            lines.append("")
    if "ml100k" in kept:
        section = kept["ml100k"]
        lines += [
            "## ML-100K: profiles from ratings",
            "",
            f"Measured {section['date']} on {section['machine']} by `{section['command']}`. Profiles from each "
            "user's ratings before the target (the movies' genres and decades, no LLM), on the leave-one-out "
            "split's c20 candidates. SASRec: the library's defaults, trained on the training prefixes. Blend: both "
            f"standardised per user, weight {section['blend_weight']} on the profile, chosen on validation NDCG@10. "
            "Differences against SASRec paired over users.",
            "",
            "| row | split | HR@1 | NDCG@5 | NDCG@10 | HR@1 vs SASRec | NDCG@10 vs SASRec |",
            "| --- | --- | ---: | ---: | ---: | --- | --- |",
        ]
        for name in ("dense-profile", "sasrec", "blend"):
            for which in ("valid", "test"):
                e = section["rows"][name][which]
                lines.append(
                    f"| {name} | {which} | {e['hr@1']:.4f} | {e['ndcg@5']:.4f} | {e['ndcg@10']:.4f} "
                    f"| {interval(e['vs_sasrec']['hr@1'])} | {interval(e['vs_sasrec']['ndcg@10'])} |"
                )
        lines.append("")
    if "speed" in kept:
        section = kept["speed"]
        lines += [
            "## Building profiles: vLLM against transformers",
            "",
            f"Measured {section['date']} on {section['machine']} by `{section['command']}`: the same "
            f"{section['reviews']} reviews extracted through each engine in turn (start-up not counted).",
            "",
            "| engine | s per review | answers parsed |",
            "| --- | ---: | ---: |",
            f"| transformers | {section['hf']['seconds_per_review']:.3f} | {section['hf']['parsed']:.0%} |",
            f"| vLLM | {section['vllm']['seconds_per_review']:.3f} | {section['vllm']['parsed']:.0%} |",
            "",
            f"vLLM builds profiles {section['speedup']:.1f}x as fast as transformers.",
            "",
        ]
    return "\n".join(lines)


def tokens_share(section: dict[str, Any], split: str = "test") -> float:
    rows = section["rows"]
    return rows[section["chosen"]][split]["prompt_tokens"] / rows["llm-whole"][split]["prompt_tokens"]


def interval(value: dict[str, Any]) -> str:
    text = f"{value['diff']:+.4f} [{value['low']:+.4f}, {value['high']:+.4f}]"
    return f"**{text}**" if value["beats"] else text


if __name__ == "__main__":
    main()
