"""BERT4Rec (Sun et al., CIKM 2019): a bidirectional transformer trained with the cloze task.

Training masks a share of the items of each window with a ``[mask]`` token and predicts them from both
sides; at inference a ``[mask]`` is appended after the history and its prediction ranks the next item. Two
options follow the paper (and RecBole's version): batches that mask only each window's last item (the very case
of inference, ``last_mask_prob``) and a learned per-item output bias (``output_bias``). Both are off by default
(the trials on ML-100K are in eval/encoders/RESULTS.md). The transformer block is SASRec's, with a padding-only
attention mask instead of a causal one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from llmrec.encoders.base import Batch, Encoder, EncoderConfig, next_item_loss, register_encoder
from llmrec.encoders.sasrec import Block
from llmrec.errors import LlmrecError


@dataclass
class BERT4RecConfig(EncoderConfig):
    """BERT4Rec: sizes (``hidden_size``, ``num_layers``, ``num_heads``, ``inner_size``, ``max_len``), the cloze
    task (``mask_prob``, ``last_mask_prob``), the output (``output_bias``), regularisation (``dropout``,
    ``attn_dropout``) and the loss fields."""

    num_layers: int = field(default=2, metadata={"help": "Transformer blocks."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads per block."})
    inner_size: int = field(default=256, metadata={"help": "Width of the feed-forward layer."})
    attn_dropout: float = field(default=0.2, metadata={"help": "Dropout on attention weights."})
    mask_prob: float = field(default=0.2, metadata={"help": "Share of items masked in each training window."})
    last_mask_prob: float = field(
        default=0.0,
        metadata={
            "help": "Share of training batches that mask only each window's last item, the next-item case of "
            "inference (the paper's extra samples; RecBole's ft_ratio, 0.5 there)."
        },
    )
    output_bias: bool = field(
        default=False, metadata={"help": "Learn a per-item bias on the output scores (the paper's softmax has one)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("mask_prob", "last_mask_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise LlmrecError(f"bert4rec: {name} must be between 0 and 1, got {value}")


class BERT4Rec(Encoder):
    """Bidirectional cloze-trained sequential recommender."""

    objective = "cloze"

    def __init__(self, num_items: int, config: BERT4RecConfig) -> None:
        super().__init__(num_items, config)
        hidden = config.hidden_size
        self.mask_token = num_items + 1
        self.item_embedding = nn.Embedding(num_items + 2, hidden, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_len, hidden)
        self.input_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(hidden, config.num_heads, config.inner_size, config.dropout, config.attn_dropout)
            for _ in range(config.num_layers)
        )
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden))
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
        self.output_bias = nn.Parameter(torch.zeros(num_items + 1)) if config.output_bias else None

    def item_bias(self) -> torch.Tensor | None:
        return self.output_bias

    def sequence_states(self, seqs: torch.Tensor, last: int | None = None) -> torch.Tensor:
        seqs = seqs[:, -self.config.max_len :]
        length = seqs.shape[1]
        real = seqs > 0  # (B, L)
        positions = torch.arange(self.config.max_len - length, self.config.max_len, device=seqs.device)
        x = self.dropout(self.input_norm(self.item_embedding(seqs) + self.position_embedding(positions)))  # (B, L, H)
        eye = torch.eye(length, dtype=torch.bool, device=seqs.device)
        mask = (real[:, None, :] | eye)[:, None]  # (B, 1, L, L): every real key, and always oneself
        for block in self.blocks:
            x = block(x, mask) * real[..., None]
        return self.head(x[:, -last:] if last else x)  # (B, L, H)

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        masked = torch.full_like(seqs[:, :1], self.mask_token)
        return self.sequence_states(torch.cat([seqs, masked], dim=1), last=1)[:, -1]  # (B, H); keeps the last max_len

    def loss(self, batch: Batch) -> torch.Tensor:
        """Cloze loss: mask ``mask_prob`` of the positions with a target (at least one per row), or, in a
        ``last_mask_prob`` share of the batches, only each row's last one; predict them."""
        eligible = batch.targets > 0  # (B, L)
        draw = torch.rand(eligible.shape, generator=batch.generator).to(eligible.device)
        masked = eligible & (draw < self.config.mask_prob)
        last = eligible & (eligible.long().flip(1).cumsum(1).flip(1) == 1)  # each row's last target
        # A whole batch, as RecBole draws it: per row, the one last-item target of such a row would weigh about
        # a tenth of a cloze row's in the batch's mean.
        if (
            self.config.last_mask_prob > 0
            and float(torch.rand((), generator=batch.generator)) < self.config.last_mask_prob
        ):
            masked = last
        # Rows where nothing was drawn mask their last eligible position (the next-item case of inference).
        masked |= last & ~masked.any(1, keepdim=True)
        inputs = batch.inputs.masked_fill(masked, self.mask_token)
        targets = batch.targets.masked_fill(~masked, 0)
        states = self.sequence_states(inputs)  # (B, L, H)
        return next_item_loss(self, states, Batch(inputs, targets, batch.negatives, batch.generator))


register_encoder("bert4rec", BERT4RecConfig, BERT4Rec)
