"""Adapters: item representations, projectors into the LLM's input space, and hybrid-prompt embedding.

``item_representation`` builds an :class:`ItemTable` (``id``, ``text`` or ``hybrid`` vectors per item), a
projector (``linear`` or ``mlp``, see :class:`ProjectorConfig`) maps it to the LLM's hidden size, and
:class:`HybridPrompter` splices the projected vectors into a prompt's token embeddings at its ``<item-emb>``
placeholders (:class:`HybridCollator` batches them for training).
"""

from llmrec.adapters.hybrid import (
    PLACEHOLDER,
    USER_PLACEHOLDER,
    HybridCollator,
    HybridPrompter,
    HybridTokens,
    render_chat,
)
from llmrec.adapters.projectors import (
    PROJECTORS,
    LinearProjector,
    MLPProjector,
    Projector,
    ProjectorConfig,
    build_projector,
    register_projector,
)
from llmrec.adapters.representations import (
    KINDS,
    ItemTable,
    UserStates,
    catalog_fingerprint,
    item_representation,
    item_texts,
)

__all__ = [
    "KINDS",
    "PLACEHOLDER",
    "USER_PLACEHOLDER",
    "PROJECTORS",
    "HybridCollator",
    "HybridPrompter",
    "HybridTokens",
    "ItemTable",
    "UserStates",
    "LinearProjector",
    "MLPProjector",
    "Projector",
    "ProjectorConfig",
    "build_projector",
    "catalog_fingerprint",
    "item_representation",
    "item_texts",
    "register_projector",
    "render_chat",
]
