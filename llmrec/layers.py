"""The layers of llmrec, from the ground up: a module imports only from its own layer or lower ones.

Each entry names the top-level modules and packages of ``llmrec`` in one layer. ``tests/test_layers.py`` walks
every module and fails on an import from a higher layer and on any import cycle.
"""

from __future__ import annotations

LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors", "paths", "progress", "configs", "devices", "layers", "prompts", "recipes"),
    ("runs",),
    ("models",),
    ("data",),
    ("ranking",),
    ("encoders",),
    ("adapters",),
    ("catalog",),
    ("inference",),
    ("training",),
    ("profiles",),
    ("agent",),
    ("serve",),
    ("eval",),
    ("cli", "__main__"),
)


def layer_of(module: str) -> int:
    """The layer index of a dotted module name inside llmrec (``llmrec.encoders.base`` -> its package's layer).

    >>> layer_of("llmrec.errors") < layer_of("llmrec.inference.engine") < layer_of("llmrec.cli")
    True
    """
    parts = module.split(".")
    if parts[0] != "llmrec":
        raise ValueError(f"{module} is not a module of llmrec")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise ValueError(f"llmrec.{top} is in no layer of llmrec.layers.LAYERS; add it to one")
