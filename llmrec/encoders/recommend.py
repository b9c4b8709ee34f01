"""Top-k recommendations from a trained encoder run, with titles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llmrec.data.builtin import load_dataset
from llmrec.data.display import ranked_items, raw_user_id
from llmrec.encoders.base import left_padded
from llmrec.encoders.run import load_best, load_run_config


def recommend(run: Path, user: str, k: int = 10, include_seen: bool = False) -> dict[str, Any]:
    """The ``k`` best next items for ``user`` (raw id, or ``#N``) after their whole history.

    Items the user already interacted with are left out unless ``include_seen``.
    """
    config = load_run_config(run)
    dataset = load_dataset(config.dataset)
    model = load_best(run)
    uid = dataset.user_id(user)
    history = dataset.sequences[uid]
    seqs = left_padded([history], model.config.max_len)  # (1, L)
    with torch.inference_mode():
        scores = model.score(seqs)[0]  # (N+1,): on the CPU, where the encoder was loaded
        if not include_seen and len(history):
            scores[torch.tensor(history, dtype=torch.long)] = float("-inf")
        top = torch.topk(scores, min(k, int(torch.isfinite(scores).sum())))
    recommendations = ranked_items(dataset, top.indices.tolist(), top.values.tolist())
    raw_id = raw_user_id(dataset, uid)
    return {
        "user_id": uid,
        "raw_id": raw_id,
        "history_length": int(len(history)),
        "model": config.model,
        "recommendations": recommendations,
    }
