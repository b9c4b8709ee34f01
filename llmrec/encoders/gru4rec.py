"""GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Czapp, RecSys 2023 for the CE loss): a GRU over the sequence.

Sequences arrive left-padded; the GRU runs on packed, front-aligned sequences so that padding never enters
its state, and the states are put back in left-padded layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from llmrec.encoders.base import Encoder, EncoderConfig, register_encoder


@dataclass
class GRU4RecConfig(EncoderConfig):
    """GRU4Rec: ``num_layers`` GRU layers of ``hidden_size`` units, ``dropout`` on the embeddings, and the loss
    fields of :class:`EncoderConfig`."""

    num_layers: int = field(default=1, metadata={"help": "Stacked GRU layers."})


def _shift(seqs: torch.Tensor, offsets: torch.Tensor, sign: int) -> torch.Tensor:
    """Roll each row of ``seqs`` ([B, L, ...]) left (``sign=1``) or right (``sign=-1``) by its offset."""
    length = seqs.shape[1]
    index = (torch.arange(length, device=seqs.device)[None, :] + sign * offsets[:, None]) % length  # (B, L)
    if seqs.dim() == 3:
        index = index[..., None].expand(-1, -1, seqs.shape[2])
    return seqs.gather(1, index)


class GRU4Rec(Encoder):
    """Recurrent sequential recommender with tied input/output item embeddings."""

    def __init__(self, num_items: int, config: GRU4RecConfig) -> None:
        super().__init__(num_items, config)
        hidden = config.hidden_size
        self.item_embedding = nn.Embedding(num_items + 1, hidden, padding_idx=0)
        self.dropout = nn.Dropout(config.dropout)
        self.gru = nn.GRU(hidden, hidden, num_layers=config.num_layers, batch_first=True)
        self.dense = nn.Linear(hidden, hidden)
        nn.init.xavier_normal_(self.item_embedding.weight)

    def sequence_states(self, seqs: torch.Tensor, last: int | None = None) -> torch.Tensor:
        seqs = seqs[:, -self.config.max_len :]
        length = seqs.shape[1]
        lengths = (seqs > 0).sum(1)  # (B,)
        pads = length - lengths
        front = _shift(seqs, pads, 1)  # (B, L): items first, padding after
        x = self.dropout(self.item_embedding(front))  # (B, L, H)
        packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)  # (B, L, H), zeros after the end
        out = _shift(out, pads, -1)  # (B, L, H), left-padded again
        return self.dense(out[:, -last:] if last else out)


register_encoder("gru4rec", GRU4RecConfig, GRU4Rec)
