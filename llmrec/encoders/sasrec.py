"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the item sequence.

Pre-LayerNorm transformer blocks with learned positional embeddings aligned to the most recent item (left
padding), tied input/output item embeddings. The default loss is full-catalog cross-entropy (the "SASRec+"
finding of Klenitskiy & Vasilev, RecSys 2023); ``sampled``, ``bce`` and ``gbce`` are options.

Padding never reaches a real position: a key mask hides padding from every query, and each query may also
attend to itself, so no attention row is fully masked (a fully masked row would give NaN that spreads through
the next layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from llmrec.encoders.base import Encoder, EncoderConfig, register_encoder


@dataclass
class SASRecConfig(EncoderConfig):
    """SASRec: sizes (``hidden_size``, ``num_layers``, ``num_heads``, ``inner_size``, ``max_len``),
    regularisation (``dropout``, ``attn_dropout``) and the loss fields of :class:`EncoderConfig`."""

    num_layers: int = field(default=2, metadata={"help": "Transformer blocks."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads per block."})
    inner_size: int = field(default=256, metadata={"help": "Width of the feed-forward layer."})
    attn_dropout: float = field(default=0.2, metadata={"help": "Dropout on attention weights."})


class Block(nn.Module):
    """Pre-LN transformer block: attention then a GELU feed-forward, each with a residual connection."""

    def __init__(self, hidden: int, heads: int, inner: int, dropout: float, attn_dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.attn_norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ffn_norm = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden))
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = attn_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last: int | None = None) -> torch.Tensor:
        """``x`` (B, L, H) and ``mask`` (B, 1, L, L) -> (B, L, H), or only the last ``last`` positions' outputs
        (their queries attend to every key; the other positions' queries and feed-forward are skipped)."""
        b, length, hidden = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).split(hidden, dim=-1)  # (B, L, H) each
        if last:
            q, x, mask = q[:, -last:], x[:, -last:], mask[:, :, -last:]  # (B, Q, H), (B, Q, H), (B, 1, Q, L)
        q = q.reshape(b, q.shape[1], self.heads, -1).transpose(1, 2)  # (B, h, Q, H/h)
        k, v = (t.view(b, length, self.heads, -1).transpose(1, 2) for t in (k, v))  # (B, h, L, H/h)
        attn = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0
        )  # (B, h, Q, H/h)
        x = x + self.dropout(self.proj(attn.transpose(1, 2).reshape(b, q.shape[2], hidden)))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class SASRec(Encoder):
    """Causal self-attention sequential recommender."""

    def __init__(self, num_items: int, config: SASRecConfig) -> None:
        super().__init__(num_items, config)
        hidden = config.hidden_size
        self.item_embedding = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_len, hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(hidden, config.num_heads, config.inner_size, config.dropout, config.attn_dropout)
            for _ in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(hidden)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def sequence_states(self, seqs: torch.Tensor, last: int | None = None) -> torch.Tensor:
        seqs = seqs[:, -self.config.max_len :]
        length = seqs.shape[1]
        real = seqs > 0  # (B, L)
        positions = torch.arange(self.config.max_len - length, self.config.max_len, device=seqs.device)
        x = self.item_embedding(seqs) * self.config.hidden_size**0.5 + self.position_embedding(positions)  # (B, L, H)
        x = self.dropout(x) * real[..., None]
        causal = torch.ones(length, length, dtype=torch.bool, device=seqs.device).tril()  # (L, L)
        eye = torch.eye(length, dtype=torch.bool, device=seqs.device)
        mask = (causal & real[:, None, :]) | eye  # (B, L, L): real keys in the past, and always oneself
        mask = mask[:, None]  # (B, 1, L, L)
        final = len(self.blocks) - 1
        for index, block in enumerate(self.blocks):
            # Only the last block can skip positions: earlier blocks' outputs are every later key and value.
            tail = last if index == final and last and last < length else None
            x = block(x, mask, tail) * real[:, -(tail or length) :, None]
        return self.final_norm(x)  # (B, L or last, H)


register_encoder("sasrec", SASRecConfig, SASRec)
