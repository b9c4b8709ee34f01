"""Evaluation protocols: which candidates a target is ranked against.

- ``full`` (default): the whole catalog. ``mask_history`` removes the user's earlier items from the
  candidates (never the target itself); its value is part of every result.
- ``sampled-N``: the target and N negatives the user never interacted with, drawn uniformly or by popularity
  (``sampled-100``, ``sampled-100-pop``), labelled as such everywhere.
- ``c20`` (LLaRA's protocol): the target and 19 uniformly drawn items the user never interacted with, drawn
  once per split with a fixed seed and saved beside the dataset, so encoders and LLM rerankers score the very
  same candidates. Reported with HR@1, NDCG@5 and NDCG@10.

Scoring is batched and vectorised; a model is given as ``score_fn(histories[B, L], candidates[B, C] | None)``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.data.splits import EvalSet, Split
from llmrec.errors import LlmrecError
from llmrec.ranking.metrics import ranking_metrics
from llmrec.runs import atomic_write

ScoreFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
C20_SEED = 2024
C20_SIZE = 20


@dataclass(frozen=True)
class Protocol:
    """A parsed protocol name: ``full``, ``c20`` or ``sampled-N[-pop]``."""

    kind: str
    negatives: int = 0
    popularity: bool = False

    @property
    def name(self) -> str:
        """The canonical name, as written into results."""
        if self.kind == "sampled":
            return f"sampled-{self.negatives}" + ("-pop" if self.popularity else "")
        return self.kind


def parse_protocol(name: str) -> Protocol:
    """Parse a protocol name.

    >>> parse_protocol("sampled-100-pop")
    Protocol(kind='sampled', negatives=100, popularity=True)
    """
    if name in ("full", "c20"):
        return Protocol(name, negatives=C20_SIZE - 1 if name == "c20" else 0)
    match = re.fullmatch(r"sampled-(\d+)(-pop|-uniform)?", name)
    if not match or int(match.group(1)) < 1:
        raise LlmrecError(f"unknown protocol {name!r}; use full, c20, sampled-N or sampled-N-pop (e.g. sampled-100)")
    return Protocol("sampled", int(match.group(1)), match.group(2) == "-pop")


def history_matrix(split: Split, examples: EvalSet, max_len: int) -> np.ndarray:
    """Left-padded ``[E, max_len]`` matrix of each example's most recent history items."""
    out = np.zeros((len(examples), max_len), dtype=np.int64)
    for row, (user, cutoff) in enumerate(zip(examples.users, examples.cutoffs, strict=True)):
        history = split.sequences[user][max(0, cutoff - max_len) : cutoff]
        if len(history):
            out[row, -len(history) :] = history
    return out


def sample_negatives(
    split: Split, examples: EvalSet, num_items: int, count: int, seed: int, popularity: bool = False
) -> np.ndarray:
    """``[E, count]`` distinct items per example that the user never interacted with (whole sequence)."""
    rng = np.random.default_rng(seed)
    weights = None
    if popularity:
        counts = np.bincount(np.concatenate(split.train_sequences()), minlength=num_items + 1)[1:].astype(np.float64)
        weights = (counts + 1) / (counts + 1).sum()
    out = np.zeros((len(examples), count), dtype=np.int64)
    for row, user in enumerate(examples.users):
        seen = set(split.sequences[user].tolist())
        if num_items - len(seen) < count:
            raise LlmrecError(f"user {user} has interacted with too many items to draw {count} negatives")
        chosen: list[int] = []
        taken: set[int] = set()
        while len(chosen) < count:
            draw = rng.choice(num_items, size=2 * count, p=weights) + 1
            for item in draw.tolist():
                if item not in seen and item not in taken:
                    taken.add(item)
                    chosen.append(item)
                    if len(chosen) == count:
                        break
        out[row] = chosen
    return out


def c20_candidates(split: Split, which: str, num_items: int, cache_dir: Path | None = None) -> np.ndarray:
    """The c20 candidates ``[E, 20]`` of a split's ``valid`` or ``test`` examples, target included.

    Drawn once with a fixed seed from the split's fingerprint, the target at a random position; saved under
    ``cache_dir`` (usually ``DATASET/splits/``) as ``c20-<fingerprint>-<which>.npy`` and reloaded from there.
    """
    examples = split.eval_set(which)
    file = cache_dir / f"c20-{split.fingerprint()}-{which}.npy" if cache_dir is not None else None
    if file is not None and file.exists():
        candidates = np.load(file)
        if candidates.shape == (len(examples), C20_SIZE):
            return candidates
    seed = C20_SEED + int(split.fingerprint()[:8], 16) + (1 if which == "test" else 0)
    negatives = sample_negatives(split, examples, num_items, C20_SIZE - 1, seed)
    rng = np.random.default_rng(seed + 1)
    candidates = np.concatenate([examples.targets[:, None], negatives], axis=1)
    candidates = np.take_along_axis(
        candidates, rng.permuted(np.tile(np.arange(C20_SIZE), (len(examples), 1)), axis=1), 1
    )
    if file is not None:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(file, lambda tmp: _save_npy(tmp, candidates))
        except OSError:
            pass  # a read-only dataset directory still gets the same candidates, recomputed
    return candidates


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as handle:  # a handle, so numpy adds no .npy suffix to the temporary name
        np.save(handle, array)


def _ranks_full(
    score_fn: ScoreFn,
    histories: np.ndarray,
    targets: np.ndarray,
    split: Split,
    examples: EvalSet,
    mask_history: bool,
    batch_size: int,
) -> np.ndarray:
    ranks = np.zeros(len(targets), dtype=np.int64)
    for start in range(0, len(targets), batch_size):
        stop = min(start + batch_size, len(targets))
        scores = score_fn(torch.from_numpy(histories[start:stop]), None).float()[:, 1:]  # (B, N): drop padding
        if not torch.isfinite(scores).all():
            raise FloatingPointError("non-finite scores (NaN or inf) in the model output; the model is broken")
        target = torch.from_numpy(targets[start:stop] - 1).to(scores.device)  # (B,)
        rows = torch.arange(stop - start, device=scores.device)
        # Ties count against the target: every other item scoring at least as much ranks above it.
        above = scores >= scores[rows, target][:, None]  # (B, N)
        if mask_history:
            for row, e in enumerate(range(start, stop)):
                seen = split.sequences[examples.users[e]][: examples.cutoffs[e]]
                above[row, torch.from_numpy(seen - 1).to(scores.device)] = False
        above[rows, target] = False
        ranks[start:stop] = above.sum(1).cpu().numpy()
    return ranks


def _ranks_candidates(
    score_fn: ScoreFn, histories: np.ndarray, candidates: np.ndarray, target_col: np.ndarray, batch_size: int
) -> np.ndarray:
    ranks = np.zeros(len(candidates), dtype=np.int64)
    for start in range(0, len(candidates), batch_size):
        stop = min(start + batch_size, len(candidates))
        scores = score_fn(torch.from_numpy(histories[start:stop]), torch.from_numpy(candidates[start:stop])).float()
        if not torch.isfinite(scores).all():
            raise FloatingPointError("non-finite scores (NaN or inf) in the model output; the model is broken")
        rows = torch.arange(stop - start, device=scores.device)
        target_score = scores[rows, torch.from_numpy(target_col[start:stop]).to(scores.device)][:, None]
        ranks[start:stop] = ((scores >= target_score).sum(1) - 1).cpu().numpy()
    return ranks


def evaluate(
    score_fn: ScoreFn,
    split: Split,
    which: str,
    *,
    num_items: int,
    max_len: int,
    protocol: str = "full",
    mask_history: bool = False,
    batch_size: int = 512,
    seed: int = 0,
    cache_dir: Path | None = None,
    ks: tuple[int, ...] = (1, 5, 10, 20),
    keep_ranks: bool = False,
) -> dict[str, Any]:
    """Rank each target of ``split``'s ``which`` examples under ``protocol`` and report the metrics.

    The result names the protocol, the split, the masking and the number of examples beside the metrics
    (lowercase keys such as ``ndcg@10``). With ``keep_ranks``, it also holds ``users`` and each one's 0-based
    target ``ranks`` (in the split's example order), for paired comparisons over users
    (:mod:`llmrec.ranking.intervals`).
    """
    parsed = parse_protocol(protocol)
    examples = split.eval_set(which)
    histories = history_matrix(split, examples, max_len)
    with torch.inference_mode():
        if parsed.kind == "full":
            ranks = _ranks_full(score_fn, histories, examples.targets, split, examples, mask_history, batch_size)
        else:
            if parsed.kind == "c20":
                candidates = c20_candidates(split, which, num_items, cache_dir)
                target_col = (candidates == examples.targets[:, None]).argmax(1)
            else:
                negatives = sample_negatives(split, examples, num_items, parsed.negatives, seed, parsed.popularity)
                candidates = np.concatenate([examples.targets[:, None], negatives], axis=1)
                target_col = np.zeros(len(examples), dtype=np.int64)
            ranks = _ranks_candidates(score_fn, histories, candidates, target_col, batch_size)
    result: dict[str, Any] = {
        "protocol": parsed.name,
        "split": which,
        "mask_history": bool(mask_history) if parsed.kind == "full" else False,
        "examples": int(len(examples)),
    }
    if parsed.kind == "sampled":
        result["negatives"] = {
            "count": parsed.negatives,
            "sampling": "popularity" if parsed.popularity else "uniform",
            "seed": seed,
        }
    result.update(ranking_metrics(ranks, ks))
    if keep_ranks:
        result.update(users=examples.users.tolist(), ranks=ranks.tolist())
    return result
