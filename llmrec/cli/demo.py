"""``llmrec demo``: the main job on the embedded defaults, end to end on one machine."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from llmrec.paths import llmrec_home


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(dataset_name: str = "ml-100k", users: int = 3, run: Path | None = None) -> None:
    """Prepare the bundled models and dataset, print statistics and a few histories, then train SASRec
    (or reuse the finished run in ``run``) and show one user's top-10 with titles."""
    from llmrec.data.builtin import load_dataset
    from llmrec.data.display import user_history
    from llmrec.data.stats import dataset_stats
    from llmrec.models import default_embedder_path, prepare_llm

    print("llmrec demo: preparing the bundled models", file=sys.stderr)
    llm, converted = prepare_llm()
    _say(f"LLM       {llm} ({'converted now' if converted else 'cached'})")
    _say(f"embedder  {default_embedder_path()}")
    dataset = load_dataset(dataset_name)
    stats = dataset_stats(dataset)
    counts = f"{stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} interactions"
    _say(f"\n{stats['name']}: {counts}")
    _say(f"average history length {stats['avg_seq_len']:.1f}, density {stats['density']:.4f}")
    for uid in range(1, min(users, dataset.num_users) + 1):
        history = user_history(dataset, f"#{uid}", limit=8)
        _say(f"\nuser {history['raw_id']}: last {len(history['history'])} of {history['length']} movies")
        for row in history["history"]:
            _say(f"  {row['time'][:10]}  {row.get('rating', 0):g}*  {row['title']}")
    _show_profile(dataset, dataset.users.sort_values("user_id")["raw_id"].iat[0])
    encoder_run = run or llmrec_home() / "runs" / f"demo-sasrec-{dataset.name}"
    _train_and_recommend(dataset_name, encoder_run)
    _fine_tune_and_recommend(dataset_name, encoder_run, llmrec_home() / "runs" / f"demo-sft-{dataset.name}")


def _show_profile(dataset: Any, user: str) -> None:
    """One user's evolving profile, built from their ratings (and reviews, where the dataset has text) into a
    SQLite store under the cache."""
    from llmrec.profiles.build import build_profiles, load_updater
    from llmrec.profiles.extractor import ReviewExtractor, clauses
    from llmrec.profiles.reviews import dataset_reviews
    from llmrec.profiles.schema import render_profile
    from llmrec.profiles.store import open_store

    reviews = [r for r in dataset_reviews(dataset) if r.user == str(user)]
    if any(clauses(r.text) for r in reviews):
        _say(f"\nprofile: user {user}'s reviews have text; build it with `llmrec profiles build`")
        return
    store = open_store(f"sqlite:///{llmrec_home() / 'profiles' / f'demo-{dataset.name}.db'}", load_updater())
    try:
        build_profiles(reviews, store, ReviewExtractor(None))
        profile = store.get(str(user))
    finally:
        store.close()
    _say(f"\nprofile of user {user} after their {profile.reviews} ratings (`llmrec profiles show` has every version):")
    for line in render_profile(profile).splitlines():
        _say(f"  {line}")


def _train_and_recommend(dataset_name: str, run: Path) -> None:
    from llmrec.encoders.recommend import recommend
    from llmrec.encoders.train import train_encoder

    if (run / "metrics.json").exists():
        metrics = json.loads((run / "metrics.json").read_text())
        _say(f"\nSASRec: reusing the trained run in {run}")
    else:
        if run.exists():
            shutil.rmtree(run)
        _say(f"\nSASRec: training on {dataset_name} (leave-one-out, early stopping; a few minutes on 2 cores)")
        # A quick model: sparser training windows and earlier stopping than the benchmark settings in eval/encoders.
        metrics = train_encoder(run, "sasrec", dataset_name, {}, {"stride": 10, "patience": 5})
    test = metrics["test"]
    _say(
        f"test (full ranking of all items): NDCG@10 {test['ndcg@10']:.4f}, HR@10 {test['hr@10']:.4f} "
        f"after {metrics['epochs']} epochs"
    )
    result = recommend(run, "#1", k=10)
    _say(f"\ntop-10 for user {result['raw_id']} after their {result['history_length']} movies:")
    for row in result["recommendations"]:
        _say(f"  {row['rank']:>2}. {row['title']}")


DEMO_SFT_STEPS = 12  # about two minutes on 2 cores: enough to show the pipeline, far from a trained recommender


def _fine_tune_and_recommend(dataset_name: str, encoder_run: Path, run: Path) -> None:
    from llmrec.inference.recommender import LLMRecommender, recommend_llm
    from llmrec.runs import read_metrics
    from llmrec.training.recipe import load_recipe
    from llmrec.training.sft import train_sft

    if read_metrics(run).get("finished"):
        _say(f"\nLLM recommender: reusing the fine-tuned run in {run}")
    else:
        if run.exists():
            shutil.rmtree(run)
        _say(
            f"\nLLM recommender: {DEMO_SFT_STEPS} LoRA steps of SmolLM2-135M reading SASRec item embeddings through "
            "an MLP projector and correcting SASRec's scores (recipe smollm2-sasrec-mlp, shortened; `llmrec sft` "
            "runs the whole recipe)"
        )
        overrides = {"dataset": dataset_name, "encoder": str(encoder_run)}
        # No validation scoring: with one checkpoint there is nothing to choose, and it would double the wait.
        short = {"max_steps": DEMO_SFT_STEPS, "save_steps": DEMO_SFT_STEPS, "validate": False}
        metrics = train_sft(load_recipe("smollm2-sasrec-mlp", overrides, short), run)
        _say(f"trained in {metrics['train_seconds']:.0f} s, peak {metrics['peak_rss_mib']:.0f} MiB")
    recommender = LLMRecommender.from_run(run)
    try:
        result = recommend_llm(recommender, "#1", k=5)
    finally:
        recommender.close()
    _say(f"\nLLM top-5 for user {result['raw_id']} (candidates from SASRec, ranked by the LLM, all catalog items):")
    for row in result["recommendations"]:
        _say(f"  {row['rank']:>2}. {row['title']}  ({row['score']:.2f})")


def demo(
    dataset: Annotated[str, typer.Option(help="Builtin name or dataset directory.")] = "ml-100k",
    users: Annotated[int, typer.Option(help="How many users' histories to show.")] = 3,
) -> None:
    """The main job on the bundled defaults: prepare models and data, train SASRec, recommend for a user."""
    run_demo(dataset, users)
