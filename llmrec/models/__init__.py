"""Bundled default models: locate, convert once into the cache, resolve model arguments."""

from llmrec.models.defaults import (
    DEFAULTS,
    default_embedder_path,
    default_llm_path,
    describe_defaults,
    prepare_llm,
    resolve_model,
)

__all__ = [
    "DEFAULTS",
    "default_embedder_path",
    "default_llm_path",
    "describe_defaults",
    "prepare_llm",
    "resolve_model",
]
