"""Projectors: small modules mapping item vectors ``[N, H_src]`` into the LLM's input space ``[N, H_llm]``.

- ``linear``: one affine map;
- ``mlp``: LLaRA's two-layer projector, ``Linear -> GELU -> Linear``.

A projector saves itself as ``config.json`` + ``model.safetensors`` and reloads bit-identically
(:meth:`Projector.save`, :meth:`Projector.load`). New kinds register with :func:`register_projector`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from llmrec import __version__
from llmrec.configs import config_from_dict
from llmrec.errors import LlmrecError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class ProjectorConfig:
    """A projector: its ``kind``, sizes (``in_dim``, ``out_dim``, ``hidden_size``) and ``dropout``.

    ``in_dim`` and ``out_dim`` may be left 0 in a recipe and filled from the item representation and the LLM with
    :meth:`resolve`; a value that is set must match them.
    """

    kind: str = field(default="mlp", metadata={"help": "Registered projector kind: linear or mlp."})
    in_dim: int = field(default=0, metadata={"help": "Width of the item vectors (0: from the item representation)."})
    out_dim: int = field(default=0, metadata={"help": "The LLM's hidden size (0: from the LLM)."})
    hidden_size: int = field(default=0, metadata={"help": "Hidden width of the mlp (0: out_dim)."})
    dropout: float = field(
        default=0.0, metadata={"help": "Dropout on the input (linear) or on the hidden layer (mlp) in training."}
    )

    def __post_init__(self) -> None:
        if self.kind not in PROJECTORS:
            known = ", ".join(sorted(PROJECTORS))
            raise LlmrecError(f"unknown projector {self.kind!r}; registered projectors: {known}")
        if min(self.in_dim, self.out_dim, self.hidden_size) < 0 or not 0 <= self.dropout < 1:
            raise LlmrecError("projector sizes must be >= 0 and dropout in [0, 1)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProjectorConfig:
        """A config from a dict (a recipe section, a saved ``config.json``), rejecting unknown keys by name."""
        return config_from_dict(cls, values, "projector")

    def resolve(self, in_dim: int, out_dim: int) -> ProjectorConfig:
        """A copy with ``in_dim``/``out_dim`` filled in; a size already set that disagrees is an error."""
        for name, want in (("in_dim", in_dim), ("out_dim", out_dim)):
            have = getattr(self, name)
            if have and have != want:
                what = "item representation width" if name == "in_dim" else "LLM hidden size"
                raise LlmrecError(
                    f"projector {name} is {have} but the {what} is {want}; set {name} to {want} or leave it 0"
                )
        return replace(self, in_dim=in_dim, out_dim=out_dim)


class Projector(nn.Module):
    """Base class: ``forward(vectors[N, in_dim]) -> [N, out_dim]``; subclasses build their layers from the config."""

    kind: ClassVar[str] = ""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        if config.in_dim <= 0 or config.out_dim <= 0:
            raise LlmrecError(
                f"projector sizes are unresolved (in_dim={config.in_dim}, out_dim={config.out_dim}); "
                "use ProjectorConfig.resolve"
            )
        self.config = config

    def check_sizes(self, in_dim: int, out_dim: int) -> None:
        """Raise unless this projector maps ``in_dim``-wide item vectors to an ``out_dim``-wide LLM."""
        if self.config.in_dim != in_dim:
            raise LlmrecError(
                f"the projector takes {self.config.in_dim}-wide item vectors but the item representation is "
                f"{in_dim} wide; use the representation it was trained with"
            )
        if self.config.out_dim != out_dim:
            raise LlmrecError(
                f"the projector outputs {self.config.out_dim} dimensions but the LLM's hidden size is {out_dim}; "
                "use the LLM it was trained for"
            )

    def save(self, directory: Path | str) -> None:
        """Write ``config.json`` (kind, sizes) and ``model.safetensors`` into ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        spec = {"config": asdict(self.config), "llmrec": __version__}
        (directory / CONFIG_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(directory / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: Path | str) -> Projector:
        """Rebuild a projector saved by :meth:`save` (in eval mode), bit-identical to the saved one."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / CONFIG_FILE).exists():
            raise LlmrecError(f"{directory}: no {CONFIG_FILE}; not a saved projector")
        try:
            config = ProjectorConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text())["config"])
            state = load_file(str(directory / WEIGHTS_FILE))
        except (json.JSONDecodeError, KeyError, TypeError, SafetensorError, OSError) as err:
            raise LlmrecError(f"{directory}: corrupted projector ({type(err).__name__}: {err}); retrain it") from None
        model = build_projector(config)
        if not isinstance(model, cls):
            raise LlmrecError(f"{directory}: holds a {config.kind} projector, not a {cls.kind or cls.__name__}")
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise LlmrecError(f"{directory}: weights do not match the {config.kind} config ({first})") from None
        return model.eval()


class LinearProjector(Projector):
    """One affine map (with dropout on its input in training)."""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__(config)
        self.dropout = nn.Dropout(config.dropout)
        self.linear = nn.Linear(config.in_dim, config.out_dim)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """``[N, in_dim] -> [N, out_dim]``."""
        return self.linear(self.dropout(vectors))


class MLPProjector(Projector):
    """LLaRA's projector: ``Linear(in, hidden) -> GELU -> Dropout -> Linear(hidden, out)``."""

    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__(config)
        hidden = config.hidden_size or config.out_dim
        self.fc1 = nn.Linear(config.in_dim, hidden)
        self.act = nn.GELU()
        self.dropout = nn.Dropout(config.dropout)
        self.fc2 = nn.Linear(hidden, config.out_dim)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        """``[N, in_dim] -> [N, out_dim]``."""
        return self.fc2(self.dropout(self.act(self.fc1(vectors))))  # (N, out_dim)


PROJECTORS: dict[str, type[Projector]] = {}


def register_projector(name: str, projector_cls: type[Projector]) -> None:
    """Register a projector class under ``name``; a name can be registered only once."""
    if name in PROJECTORS:
        raise ValueError(f"projector {name!r} is already registered")
    projector_cls.kind = name
    PROJECTORS[name] = projector_cls


def build_projector(config: ProjectorConfig | dict[str, Any]) -> Projector:
    """Instantiate the projector ``config`` describes (sizes must be resolved)."""
    if not isinstance(config, ProjectorConfig):
        config = ProjectorConfig.from_dict(config)
    return PROJECTORS[config.kind](config)


register_projector("linear", LinearProjector)
register_projector("mlp", MLPProjector)
