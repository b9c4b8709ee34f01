"""Evaluating an encoder run directory under any protocol (``llmrec eval``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmrec.data.builtin import load_dataset
from llmrec.data.splits import leave_one_out_split
from llmrec.encoders.run import evaluate_encoder, load_best, load_run_config
from llmrec.errors import LlmrecError


def evaluate_run(
    run: Path, protocol: str = "full", which: str = "test", mask_history: bool = False, keep_ranks: bool = False
) -> dict[str, Any]:
    """Evaluate the best checkpoint of an encoder run on the split it was trained with (``keep_ranks``: with each
    user's target rank)."""
    run = Path(run)
    config = load_run_config(run)
    dataset = load_dataset(config.dataset)
    split = leave_one_out_split(dataset, min_len=config.split.get("min_len", 3))
    if split.fingerprint() != config.dataset_fingerprint:
        raise LlmrecError(f"{run}: the dataset changed since this run was trained (split fingerprint differs)")
    result = evaluate_encoder(
        load_best(run),
        split,
        which,
        dataset,
        protocol=protocol,
        mask_history=mask_history,
        keep_ranks=keep_ranks,
    )
    return {"run": str(run), "model": config.model, "dataset": dataset.name, **result}
