"""The encoder contract, the shared losses, the registry, and save/load.

An encoder is an ``nn.Module`` over left-padded item-id sequences ``seqs[B, L]`` (0 is padding, the most recent
item is in the last column):

- ``encode(seqs) -> [B, H]``: the user state after the last item;
- ``item_embeddings() -> [N+1, H]``: the output embedding of every item (row 0 is padding);
- ``item_bias() -> [N+1] | None``: a per-item output bias added to every score (BERT4Rec's), or None;
- ``score(seqs, candidates[B, C] | None) -> [B, C]`` or ``[B, N+1]`` (column 0, the padding item, is ``-inf``);
- ``loss(batch) -> scalar`` for a training batch (see :class:`Batch`).

Models take explicit sizes (``num_items``) and a config dataclass, never a dataset object.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from llmrec import __version__
from llmrec.configs import config_from_dict
from llmrec.errors import LlmrecError

LOSSES = ("ce", "sampled", "bce", "gbce")
CONFIG_FILE = "encoder.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class EncoderConfig:
    """Fields every trainable sequential encoder shares.

    Sizes: ``hidden_size``, ``max_len``. Regularisation: ``dropout``. Objective: ``loss`` with
    ``num_negatives`` and ``gbce_t``.
    """

    hidden_size: int = field(default=64, metadata={"help": "Width of item embeddings and hidden states."})
    max_len: int = field(default=50, metadata={"help": "Most recent items the model reads per sequence."})
    dropout: float = field(default=0.2, metadata={"help": "Dropout on embeddings and hidden layers."})
    loss: str = field(
        default="ce",
        metadata={
            "help": "ce: softmax over the whole catalog; sampled: softmax over the target and num_negatives "
            "uniform negatives; bce: one negative per target (the SASRec paper); gbce: gSASRec's generalised "
            "BCE with num_negatives negatives and calibration gbce_t."
        },
    )
    num_negatives: int = field(default=256, metadata={"help": "Negatives per target for sampled and gbce."})
    gbce_t: float = field(default=0.75, metadata={"help": "gBCE calibration parameter t in [0, 1]."})

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise LlmrecError(f"loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.hidden_size <= 0 or self.max_len <= 0:
            raise LlmrecError("hidden_size and max_len must be positive")


@dataclass
class Batch:
    """A training batch: ``inputs[B, L]`` left-padded item ids and ``targets[B, L]`` (0 = no loss here).

    ``negatives`` (``[B, L, K]``) is filled by the trainer for sampled losses; ``generator`` seeds any other
    randomness a model's loss needs (BERT4Rec's masking).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    negatives: torch.Tensor | None = None
    generator: torch.Generator | None = None

    def target_span(self) -> int:
        """How many trailing positions hold every target of the batch (at least 1)."""
        columns = (self.targets > 0).any(0).nonzero()  # (K, 1)
        return self.targets.shape[1] - int(columns[0]) if len(columns) else 1

    def tail(self, span: int) -> Batch:
        """The batch cut to its last ``span`` positions."""
        negatives = None if self.negatives is None else self.negatives[:, -span:]
        return Batch(self.inputs[:, -span:], self.targets[:, -span:], negatives, self.generator)


def left_padded(histories: list[Any], max_len: int) -> torch.Tensor:
    """``[B, max_len]`` item ids: each history's last ``max_len`` items, right-aligned after zeros (the padding)
    as encoders read them.

    >>> left_padded([[5, 9, 2], [7]], 4).tolist()
    [[0, 5, 9, 2], [0, 0, 0, 7]]
    """
    seqs = torch.zeros((len(histories), max_len), dtype=torch.long)
    for row, history in enumerate(histories):
        recent = [int(i) for i in history][-max_len:]
        if recent:
            seqs[row, -len(recent) :] = torch.tensor(recent, dtype=torch.long)
    return seqs


class Encoder(nn.Module):
    """Base class: subclasses implement ``sequence_states`` (or override ``encode``) and own ``item_embedding``."""

    name: ClassVar[str] = ""
    trainable: ClassVar[bool] = True
    objective: ClassVar[str] = "next"
    """``next``: targets are the following items (causal models); ``cloze``: targets are the inputs themselves,
    and the model's loss masks some of them (BERT4Rec)."""
    any_length: ClassVar[bool] = False
    """Whether ``sequence_states`` reads sequences longer than ``max_len`` (a recurrent state, no table of
    positions): training may then use windows in which every target sees at least ``max_len`` items. ``encode``
    still reads only the last ``max_len``."""

    def __init__(self, num_items: int, config: Any) -> None:
        super().__init__()
        self.num_items = num_items
        self.config = config

    def sequence_states(self, seqs: torch.Tensor, last: int | None = None) -> torch.Tensor:
        """Hidden state at every position, ``[B, L, H]``; position t sees items up to t.

        With ``last``, only the states of the last ``last`` positions, ``[B, last, H]``: a model may skip the
        work that only the other positions' outputs need.
        """
        raise NotImplementedError

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """The user state after the last item, ``[B, H]``."""
        return self.sequence_states(seqs, last=1)[:, -1]

    def item_embeddings(self) -> torch.Tensor:
        """Output embeddings of all items, ``[N+1, H]`` (row 0 is the padding item)."""
        return self.item_embedding.weight[: self.num_items + 1]

    def item_bias(self) -> torch.Tensor | None:
        """A per-item output bias ``[N+1]`` added to every score and logit, or None (the default: no bias)."""
        return None

    def score(self, seqs: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of ``candidates[B, C]``, or of the whole catalog ``[B, N+1]`` with ``-inf`` in column 0."""
        state = self.encode(seqs)  # (B, H)
        items = self.item_embeddings()  # (N+1, H)
        bias = self.item_bias()
        if candidates is None:
            scores = state @ items.T  # (B, N+1)
            if bias is not None:
                scores = scores + bias
            scores[:, 0] = float("-inf")
            return scores
        scores = torch.einsum("bh,bch->bc", state, items[candidates])  # (B, C)
        return scores if bias is None else scores + bias[candidates]

    def forward(self, batch: Batch) -> torch.Tensor:
        """The training loss (so that data-parallel wrappers, which hook ``forward``, see it)."""
        return self.loss(batch)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Next-item loss over every position that has a target."""
        span = batch.target_span()  # windows that train only their last positions need only those states
        states = self.sequence_states(batch.inputs, last=span)  # (B, span, H)
        return next_item_loss(self, states, batch.tail(span))


def next_item_loss(model: Encoder, states: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The configured loss at the positions of ``batch`` whose target is not 0."""
    config = model.config
    mask = batch.targets > 0  # (B, L)
    hidden = states[mask]  # (T, H)
    targets = batch.targets[mask]  # (T,)
    items = model.item_embeddings()  # (N+1, H)
    bias = model.item_bias()
    if config.loss == "ce":
        logits = hidden @ items.T  # (T, N+1)
        if bias is not None:
            logits = logits + bias
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, targets)
    if batch.negatives is None:
        raise ValueError(f"loss {config.loss!r} needs batch.negatives")
    negatives = batch.negatives[mask]  # (T, K)
    positive = (hidden * items[targets]).sum(-1)  # (T,)
    negative = torch.einsum("th,tkh->tk", hidden, items[negatives])  # (T, K)
    if bias is not None:
        positive, negative = positive + bias[targets], negative + bias[negatives]
    if config.loss == "sampled":
        # Sampled softmax; a negative that happens to equal the target is masked out.
        negative = negative.masked_fill(negatives == targets[:, None], float("-inf"))
        logits = torch.cat([positive[:, None], negative], dim=1)  # (T, 1+K)
        return F.cross_entropy(logits, torch.zeros_like(targets))
    if config.loss == "bce":
        return F.binary_cross_entropy_with_logits(
            positive, torch.ones_like(positive)
        ) + F.binary_cross_entropy_with_logits(negative[:, 0], torch.zeros_like(positive))
    # gBCE (Petrov & Macdonald, RecSys 2023): sigmoid(positive) raised to beta counters the overconfidence that
    # negative sampling induces; beta = alpha * (t * (1 - 1/alpha) + 1/alpha) with alpha = K / (N - 1).
    alpha = negatives.shape[1] / max(model.num_items - 1, 1)
    beta = alpha * (config.gbce_t * (1 - 1 / alpha) + 1 / alpha)
    positive_loss = -beta * F.logsigmoid(positive)
    negative_loss = -F.logsigmoid(-negative).sum(-1)
    return (positive_loss + negative_loss).mean() / (1 + negatives.shape[1])


@dataclass(frozen=True)
class _Registered:
    config_cls: type
    model_cls: type[Encoder]


ENCODERS: dict[str, _Registered] = {}


def register_encoder(name: str, config_cls: type, model_cls: type[Encoder]) -> None:
    """Register an encoder class under ``name``; a name can be registered only once."""
    if name in ENCODERS:
        raise ValueError(f"encoder {name!r} is already registered")
    model_cls.name = name
    ENCODERS[name] = _Registered(config_cls, model_cls)


def _registered(name: str) -> _Registered:
    if name not in ENCODERS:
        raise LlmrecError(f"unknown encoder {name!r}; registered encoders: {', '.join(sorted(ENCODERS))}")
    return ENCODERS[name]


def make_config(name: str, values: dict[str, Any] | None = None) -> Any:
    """The config dataclass of encoder ``name`` from a dict, rejecting unknown keys by name."""
    return config_from_dict(_registered(name).config_cls, values, name)


def build_encoder(name: str, num_items: int, config: Any = None) -> Encoder:
    """Instantiate the encoder registered as ``name`` for a catalog of ``num_items`` items."""
    registered = _registered(name)
    if not isinstance(config, registered.config_cls):
        config = make_config(name, config)
    return registered.model_cls(num_items, config)


def save_encoder(model: Encoder, directory: Path) -> None:
    """Write ``encoder.json`` (name, sizes, config) and ``model.safetensors`` into ``directory``."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = {"name": model.name, "num_items": model.num_items, "config": asdict(model.config), "llmrec": __version__}
    (directory / CONFIG_FILE).write_text(json.dumps(spec, indent=2) + "\n")
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE))


def load_encoder(directory: Path) -> Encoder:
    """Rebuild an encoder saved by :func:`save_encoder`; bit-identical to the saved one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    spec_file = directory / CONFIG_FILE
    if not spec_file.exists():
        raise LlmrecError(f"{directory}: no {CONFIG_FILE}; not a saved encoder")
    try:
        spec = json.loads(spec_file.read_text())
        model = build_encoder(spec["name"], int(spec["num_items"]), spec["config"])
        state = load_file(str(directory / WEIGHTS_FILE))
    except (json.JSONDecodeError, KeyError, SafetensorError, FileNotFoundError, OSError) as err:
        raise LlmrecError(
            f"{directory}: corrupted encoder checkpoint ({type(err).__name__}: {err}); retrain it"
        ) from None
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise LlmrecError(f"{directory}: checkpoint does not match the {spec['name']} config ({first})") from None
    model.eval()
    return model
