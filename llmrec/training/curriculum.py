"""The training order of an SFT run, fixed before the first step: epochs of seeded shuffles of the examples, each
row rendered text-only or hybrid as the recipe's curriculum says at its position in training.

Because the whole order is drawn up front, a run resumed from a checkpoint sees the very same batches as an
uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from llmrec.adapters.tasks import TaskExample
from llmrec.training.recipe import Recipe


def hybrid_probability(recipe: Recipe, progress: float) -> float:
    """Probability that an example at ``progress`` (0 to 1 through training) is rendered hybrid.

    >>> r = Recipe(representation="text")
    >>> [round(hybrid_probability(r, t), 2) for t in (0.0, 0.25, 0.5, 1.0)]
    [0.0, 0.5, 1.0, 1.0]
    """
    if not recipe.uses_items:
        return 0.0
    curriculum = recipe.curriculum
    if curriculum.kind == "none":
        return 1.0
    if curriculum.kind == "rsllm":
        return float(progress >= curriculum.text_fraction)
    ramp = min(1.0, progress / curriculum.ramp) if curriculum.ramp > 0 else 1.0
    return curriculum.start + (curriculum.end - curriculum.start) * ramp


def training_rows(
    text: list[TaskExample], hybrid: list[TaskExample] | None, recipe: Recipe, total: int, seed: int
) -> list[dict[str, Any]]:
    """The first ``total`` training rows in order: epochs of shuffles of the examples (drawn from ``seed``), each
    row the text-only or the hybrid rendering of its example, drawn with :func:`hybrid_probability` at its
    position. Item-scored rows (task output ``item``) carry candidates and the target's index instead of an
    answer."""
    rows: list[dict[str, Any]] = []
    coins = np.random.default_rng([seed, 1]).random(total)
    epoch = 0
    while len(rows) < total:
        order = np.random.default_rng([seed, 0, epoch]).permutation(len(text))
        for index in order[: total - len(rows)].tolist():
            use_hybrid = hybrid is not None and coins[len(rows)] < hybrid_probability(recipe, len(rows) / total)
            example = hybrid[index] if use_hybrid and hybrid is not None else text[index]
            row = {"prompt": example.prompt, "item_ids": example.item_ids, "user_vectors": example.user_vectors}
            if recipe.task.output == "item":  # scored by the candidates' vectors: no answer tokens
                row |= {"candidates": example.candidates, "target_index": example.target_index}
            else:
                row["answer"] = example.answer
            rows.append(row)
        epoch += 1
    return rows
