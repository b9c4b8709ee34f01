"""Most-popular baseline: every user gets the items ranked by their training interaction count.

No training; :meth:`Pop.fit` counts. It implements the encoder contract with a one-dimensional state (always 1)
and item "embeddings" equal to the counts, so it plugs into every protocol and table as the floor.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from llmrec.encoders.base import Batch, Encoder, register_encoder


@dataclass
class PopConfig:
    """Most-popular baseline: no hyperparameters besides ``max_len`` (kept for the shared interface)."""

    max_len: int = field(default=50, metadata={"help": "Unused; sequences are ignored."})


class Pop(Encoder):
    """Ranks items by training popularity; the same list for every user."""

    trainable = False

    def __init__(self, num_items: int, config: PopConfig) -> None:
        super().__init__(num_items, config)
        self.register_buffer("counts", torch.zeros(num_items + 1, 1))

    def fit(self, sequences: list[np.ndarray]) -> None:
        """Count every item occurrence in the training ``sequences``."""
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if sequences else np.zeros(0, int)
        counts = np.bincount(flat, minlength=self.num_items + 1)[: self.num_items + 1].astype(np.float32)
        counts[0] = 0.0
        self.counts.copy_(torch.from_numpy(counts)[:, None])

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        return torch.ones(seqs.shape[0], 1, device=seqs.device)

    def item_embeddings(self) -> torch.Tensor:
        return self.counts

    def loss(self, batch: Batch) -> torch.Tensor:
        raise TypeError("pop has no loss; call fit(sequences)")


register_encoder("pop", PopConfig, Pop)
