"""Checking a PEFT LoRA adapter against a base model before any engine loads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError


def check_lora(adapter: str | Path, base_model: str) -> Path:
    """Check a PEFT LoRA directory against a base model before any engine loads it; return its path.

    Every LoRA matrix must fit the module it adapts: a LoRA trained on another base model fails here with a
    message naming both models, not deep inside an engine.
    """
    path = Path(adapter).expanduser()
    config_file = path / "adapter_config.json"
    weights = path / "adapter_model.safetensors"
    if not config_file.exists() or not weights.exists():
        raise LlmrecError(
            f"{path}: not a PEFT LoRA adapter directory (needs adapter_config.json and adapter_model.safetensors)"
        )
    config = json.loads(config_file.read_text())
    if config.get("peft_type", "LORA") != "LORA":
        raise LlmrecError(f"{path}: a {config.get('peft_type')} adapter; only LoRA adapters are supported")
    from safetensors import safe_open

    shapes = _module_shapes(base_model)
    with safe_open(str(weights), framework="pt") as handle:
        for key in handle.keys():  # noqa: SIM118 - safe_open is not a dict
            if ".lora_A." not in key and ".lora_B." not in key:
                continue
            module = key.split(".lora_")[0].removeprefix("base_model.model.")
            shape = handle.get_slice(key).get_shape()
            target = shapes.get(module) or shapes.get(f"model.{module}")
            if target is None:
                raise LlmrecError(
                    f"{path}: the adapter targets {module}, which {base_model} does not have; "
                    f"it was trained on {config.get('base_model_name_or_path')!r}"
                )
            out_features, in_features = target
            fits = shape[1] == in_features if ".lora_A." in key else shape[0] == out_features
            if not fits:
                raise LlmrecError(
                    f"{path}: LoRA weight {key} has shape {tuple(shape)}, which does not fit {module} "
                    f"({out_features}x{in_features}) of {base_model}; the adapter was trained on "
                    f"{config.get('base_model_name_or_path')!r}: use that base model"
                )
    return path


def check_lora_targets(base_model: str, targets: Any) -> None:
    """Raise unless each of ``targets`` (PEFT ``target_modules``: names matched as module-name suffixes) names a
    linear module of ``base_model``; a regex string is left to PEFT."""
    if not isinstance(targets, list | tuple):
        return
    names = list(_module_shapes(base_model))
    missing = [t for t in targets if not any(n == t or n.endswith(f".{t}") for n in names)]
    if missing:
        leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise LlmrecError(
            f"lora target_modules {missing} are not linear modules of {base_model}; its linear modules are named "
            f"{', '.join(leaves)}"
        )


def _module_shapes(base_model: str) -> dict[str, tuple[int, int]]:
    """``(out_features, in_features)`` of every linear module of a model, built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_model)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {
        name: (module.out_features, module.in_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
