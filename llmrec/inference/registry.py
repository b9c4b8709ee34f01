"""Engines by name: ``auto``, ``vllm``, ``hf`` and ``openai``, each built by a factory that imports its module.

The factories import their engine module only when called, so asking for ``hf`` never imports vLLM. A new engine
registers with :func:`register_engine`; a name can be registered once.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from llmrec.errors import LlmrecError
from llmrec.inference.engine import Engine

EngineFactory = Callable[..., Engine]
ENGINES: dict[str, EngineFactory] = {}


def register_engine(name: str, factory: EngineFactory) -> None:
    """Register ``factory(model, **options) -> Engine`` under ``name``; a name can be registered only once."""
    if name in ENGINES or name == "auto":
        raise ValueError(f"engine {name!r} is already registered")
    ENGINES[name] = factory


def vllm_available() -> bool:
    """True when vLLM can be imported here."""
    return importlib.util.find_spec("vllm") is not None


def engine_name(name: str) -> str:
    """The engine a name stands for: ``auto`` is vLLM when it can be imported here, else hf.

    >>> engine_name("hf")
    'hf'
    """
    if name != "auto" and name not in ENGINES:
        raise LlmrecError(f"unknown engine {name!r}; choose one of auto, {', '.join(ENGINES)}")
    if name == "auto":
        return "vllm" if vllm_available() else "hf"
    return name


def load_engine(name: str = "auto", model: str | None = None, **options: Any) -> Engine:
    """Build an engine by name: ``auto`` (vLLM when importable, else hf), ``vllm``, ``hf`` or ``openai``.

    ``model`` is a local path, a hub id, or ``None`` for the bundled default (for ``openai``: the served
    model's name, default the server's first). ``options`` go to the engine's constructor.
    """
    return ENGINES[engine_name(name)](model, **options)


def batch_engine_options(
    engine: str,
    lora: str | None = None,
    overflow: str | None = None,
    base_url: str | None = None,
    compiled: bool = False,
) -> dict[str, Any]:
    """The constructor options a batch job over ``engine`` needs: the server's ``base_url`` for openai (where the
    server, holding the tokenizer, rejects over-long prompts itself); otherwise the ``overflow`` rule (default
    truncate) and, for vLLM, LoRA support with a LoRA adapter (vLLM fixes it when it starts) and, with
    ``compiled``, vLLM's ``torch.compile`` graphs (which it runs without on the CPU unless asked)."""
    name = engine_name(engine)
    if compiled and name != "vllm":
        raise LlmrecError(f"--compile applies to the vllm engine (torch.compile graphs), not to {name}")
    if name == "openai":
        if overflow is not None:
            raise LlmrecError(
                "--overflow does not apply to the openai engine: the server holds the tokenizer and rejects an "
                "over-long prompt, and that row goes to the errors file"
            )
        return {"base_url": base_url}
    options: dict[str, Any] = {"overflow": overflow or "truncate"}
    if lora is not None and name == "vllm":
        options["enable_lora"] = True
    if compiled:
        options["enforce_eager"] = False
    return options


def _vllm(model: str | None, **options: Any) -> Engine:
    from llmrec.inference.vllm import VLLMEngine

    return VLLMEngine(model, **options)


def _hf(model: str | None, **options: Any) -> Engine:
    from llmrec.inference.hf import HFEngine

    return HFEngine(model, **options)


def _openai(model: str | None, **options: Any) -> Engine:
    from llmrec.inference.openai import OpenAIEngine

    return OpenAIEngine(model, **options)


register_engine("vllm", _vllm)
register_engine("hf", _hf)
register_engine("openai", _openai)
