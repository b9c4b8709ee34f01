"""The engine contract's shared pieces: configs, requests, prompt fitting, LoRA checks, engine selection."""

from __future__ import annotations

import pytest

from llmrec.errors import LlmrecError
from llmrec.inference.engine import Completion, PromptTooLong, Result, SamplingConfig
from llmrec.inference.lora import check_lora
from llmrec.inference.prompting import fit_prompt
from llmrec.inference.registry import engine_name, load_engine
from llmrec.models.defaults import resolve_model


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n", 0, "n must be"),
        ("temperature", -1.0, "temperature"),
        ("top_p", 0.0, "top_p"),
        ("max_new_tokens", 0, "max_new"),
    ],
)
def test_sampling_config_rejects_bad_values(field: str, value: float, message: str) -> None:
    with pytest.raises(LlmrecError, match=message):
        SamplingConfig(**{field: value})


def test_fit_prompt_truncates_from_the_left_or_rejects() -> None:
    with pytest.warns(UserWarning, match="truncated from the left to 6"):
        ids, warning = fit_prompt(list(range(10)), context=8, max_new_tokens=2, overflow="truncate")
    assert ids == [4, 5, 6, 7, 8, 9] and "truncated" in warning
    assert fit_prompt([1, 2], context=8, max_new_tokens=2, overflow="reject") == ([1, 2], None)
    with pytest.raises(PromptTooLong, match="does not fit the context of 8 tokens"):
        fit_prompt(list(range(10)), context=8, max_new_tokens=2, overflow="reject")


def test_result_usage_counts_every_completion() -> None:
    result = Result([Completion("a", [1, 2], -1.0), Completion("b", [3], -2.0)], prompt_tokens=7)
    assert result.usage == {"prompt_tokens": 7, "completion_tokens": 3}
    assert Result([], prompt_tokens=1, completion_tokens=9).usage["completion_tokens"] == 9


def test_check_lora_accepts_matching_and_names_the_mismatch(lora_dir, foreign_lora_dir) -> None:
    model = resolve_model(None)
    assert check_lora(lora_dir, model) == lora_dir
    with pytest.raises(LlmrecError, match=r"does not fit model\.layers\.0\.self_attn\.q_proj \(576x576\)"):
        check_lora(foreign_lora_dir, model)


def test_load_engine_names_the_choices() -> None:
    with pytest.raises(LlmrecError, match="unknown engine 'tgi'; choose one of auto, vllm, hf, openai"):
        load_engine("tgi")


def test_auto_picks_vllm_when_importable_else_hf(monkeypatch) -> None:
    import importlib.util

    import llmrec.inference.registry as engine

    expected = "vllm" if importlib.util.find_spec("vllm") is not None else "hf"
    assert engine_name("auto") == expected
    monkeypatch.setattr(engine, "vllm_available", lambda: False)
    assert engine_name("auto") == "hf"
    monkeypatch.setattr(engine, "vllm_available", lambda: True)
    assert engine_name("auto") == "vllm"


def test_a_directory_that_is_not_a_checkpoint_is_refused(tmp_path) -> None:
    from llmrec.inference.hf import HFEngine

    with pytest.raises(LlmrecError, match="not a model checkpoint directory"):
        HFEngine(str(tmp_path))


def test_engines_register_once_and_batch_options_follow_the_engine() -> None:
    from llmrec.inference.registry import batch_engine_options, register_engine, vllm_available

    with pytest.raises(ValueError, match="already registered"):
        register_engine("hf", lambda model, **options: None)
    assert batch_engine_options("openai", base_url="http://h/v1") == {"base_url": "http://h/v1"}
    with pytest.raises(LlmrecError, match="--overflow does not apply to the openai engine"):
        batch_engine_options("openai", overflow="reject")
    assert batch_engine_options("hf", lora="runs/a") == {"overflow": "truncate"}
    auto = batch_engine_options("auto", lora="runs/a", overflow="reject")
    assert auto == {"overflow": "reject", **({"enable_lora": True} if vllm_available() else {})}
    assert batch_engine_options("vllm", compiled=True) == {"overflow": "truncate", "enforce_eager": False}
    with pytest.raises(LlmrecError, match="--compile applies to the vllm engine .*, not to hf"):
        batch_engine_options("hf", compiled=True)


def test_capabilities_are_checked_before_the_work(hf_engine) -> None:
    from llmrec.inference.engine import CAPABILITIES, ScoringUnavailable, Unsupported, require

    assert hf_engine.capabilities == frozenset(CAPABILITIES)
    require(hf_engine, "last_hidden", "ranking by item vectors")

    class TextOnly:
        name, capabilities = "text-only", frozenset()

    with pytest.raises(ScoringUnavailable, match="ranking candidates needs an engine with score"):
        require(TextOnly(), "score", "ranking candidates")
    with pytest.raises(Unsupported, match="offers generation only"):
        require(TextOnly(), "input_embedding", "prompt embeddings")
