"""Fixtures for the inference tests: LoRA adapters for the bundled model and for another one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def _save_lora(base, out: Path, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) weights: it changes the base model's answers, mildly enough that they
    stay well-formed text (so two engines agree on them)."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(0.5)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA adapter for the bundled default model."""
    from transformers import AutoModelForCausalLM

    from llmrec.models.defaults import resolve_model

    base = AutoModelForCausalLM.from_pretrained(resolve_model(None), dtype=torch.float32)
    return _save_lora(base, tmp_path_factory.mktemp("lora") / "random-lora", seed=0)


@pytest.fixture(scope="session")
def foreign_lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter trained on another (tiny, wider) Llama model: it must be refused for the default model."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=96,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return _save_lora(LlamaForCausalLM(config), tmp_path_factory.mktemp("lora") / "foreign-lora", seed=1)
