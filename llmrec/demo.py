"""``llmrec demo``: the main job on the embedded defaults, end to end on one machine."""

from __future__ import annotations

import sys

from llmrec.data.builtin import load_dataset
from llmrec.data.display import user_history
from llmrec.data.stats import dataset_stats
from llmrec.models import default_embedder_path, prepare_llm


def _say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(dataset_name: str = "ml-100k", users: int = 3) -> None:
    """Prepare the bundled models and dataset, then print the dataset statistics and a few user histories."""
    print("llmrec demo: preparing the bundled models", file=sys.stderr)
    llm, converted = prepare_llm()
    _say(f"LLM       {llm} ({'converted now' if converted else 'cached'})")
    _say(f"embedder  {default_embedder_path()}")
    dataset = load_dataset(dataset_name)
    stats = dataset_stats(dataset)
    _say(f"\n{stats['name']}: {stats['users']:,} users, {stats['items']:,} items, {stats['interactions']:,} interactions")
    _say(f"average history length {stats['avg_seq_len']:.1f}, density {stats['density']:.4f}")
    for uid in range(1, min(users, dataset.num_users) + 1):
        history = user_history(dataset, f"#{uid}", limit=8)
        _say(f"\nuser {history['raw_id']}: last {len(history['history'])} of {history['length']} movies")
        for row in history["history"]:
            _say(f"  {row['time'][:10]}  {row.get('rating', 0):g}*  {row['title']}")
