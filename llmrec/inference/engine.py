"""The Engine contract every LLM feature goes through, and what all engines share.

A ``Request`` holds chat ``messages``, or a text ``prompt``, or ``prompt_embeds`` (``[L, H]``, the adapters'
hybrid prompts), plus optionally a ``Grounding`` (candidates or the whole catalog) and a LoRA adapter
directory. ``Engine.generate(requests, params)`` returns one ``Result`` per request: the ``n`` sampled
``Completion`` texts, each with its sequence log-probability (sum of the model's raw token log-probs) and the
catalog item it resolves to. ``load_engine("auto" | "vllm" | "hf" | "openai", model)`` builds one.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmrec.errors import LlmrecError
from llmrec.inference.grounding import Grounding, Resolution, TitleTrie

if TYPE_CHECKING:
    import torch

OVERFLOW = ("truncate", "reject")


@dataclass
class SamplingConfig:
    """How to sample. The defaults are greedy decoding of one answer.

    Sampling: ``n`` (answers per request), ``temperature`` (0 = greedy), ``top_p``, ``seed``.
    Length and stopping: ``max_new_tokens``, ``stop`` (strings that end an answer; not included in it).
    Output: ``logprobs`` (how many top alternatives to report per generated token; ``None`` = none; the
    sequence log-probability is always reported).
    """

    n: int = field(default=1, metadata={"help": "Answers sampled per request."})
    temperature: float = field(default=0.0, metadata={"help": "Softmax temperature; 0 decodes greedily."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass."})
    max_new_tokens: int = field(default=64, metadata={"help": "Most tokens generated per answer."})
    seed: int = field(default=0, metadata={"help": "Random seed of the sampling."})
    stop: list[str] | None = field(default=None, metadata={"help": "Strings that end an answer."})
    logprobs: int | None = field(default=None, metadata={"help": "Top alternatives reported per token."})

    def __post_init__(self) -> None:
        if self.n < 1:
            raise LlmrecError(f"n must be at least 1, got {self.n}")
        if self.temperature < 0:
            raise LlmrecError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise LlmrecError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise LlmrecError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.logprobs is not None and self.logprobs < 0:
            raise LlmrecError(f"logprobs must be >= 0, got {self.logprobs}")

    @property
    def greedy(self) -> bool:
        """True when decoding is deterministic argmax."""
        return self.temperature == 0.0


@dataclass
class Request:
    """One generation request: exactly one of ``messages``, ``prompt``, ``prompt_embeds``.

    ``prompt`` is used verbatim (no chat template); ``messages`` are rendered with the model's chat template
    (generation prompt added). ``prompt_embeds`` is a ``[L, H]`` float tensor in the model's input space.
    """

    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    prompt_embeds: torch.Tensor | None = None
    grounding: Grounding | None = None
    lora: str | Path | None = None

    def __post_init__(self) -> None:
        given = sum(x is not None for x in (self.messages, self.prompt, self.prompt_embeds))
        if given != 1:
            raise LlmrecError("a request needs exactly one of messages, prompt or prompt_embeds")
        if self.messages is not None and (
            not self.messages or not all(isinstance(m, dict) and "role" in m for m in self.messages)
        ):
            raise LlmrecError("messages must be a non-empty list of {'role': ..., 'content': ...} objects")


@dataclass
class Completion:
    """One sampled answer: text, token ids, sequence log-probability, and the catalog item it names."""

    text: str
    token_ids: list[int]
    logprob: float
    finish_reason: str | None = None
    item_id: int | None = None
    title: str | None = None
    resolved_by: str | None = None
    top_logprobs: list[dict[int | str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``top_logprobs`` keys become strings)."""
        out = asdict(self)
        if self.top_logprobs is not None:
            out["top_logprobs"] = [{str(k): v for k, v in step.items()} for step in self.top_logprobs]
        return out


@dataclass
class Result:
    """The answers to one request and its token usage."""

    completions: list[Completion]
    prompt_tokens: int
    completion_tokens: int = -1
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.completion_tokens < 0:  # engines that see the tokens count them; servers report usage
            self.completion_tokens = sum(len(c.token_ids) for c in self.completions)

    @property
    def usage(self) -> dict[str, int]:
        """``prompt_tokens`` and ``completion_tokens``, as OpenAI reports them."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


class Engine(Protocol):
    """What every engine offers."""

    name: str
    model: str

    def generate(self, requests: list[Request], params: SamplingConfig) -> list[Result]:
        """Answer every request (in order); a bad request raises ``LlmrecError`` before any generation."""
        ...

    def score(self, requests: list[Request], continuations: list[list[str]]) -> list[list[float]]:
        """Log-probability of each continuation as the request's complete answer (its tokens, then the end token)."""
        ...

    def close(self) -> None:
        """Free the engine's processes and memory."""
        ...


class ScoringUnavailable(LlmrecError):
    """The engine cannot compute exact answer log-probabilities (``score``); rankings fall back or are omitted."""


class RequestRejected(LlmrecError):
    """The engine refused one request (not the engine as a whole): a batch reports that row and goes on."""


class PromptTooLong(RequestRejected):
    """A prompt does not fit the model's context with room for the answer (``overflow="reject"``)."""


def fit_prompt(token_ids: list[int], context: int, max_new_tokens: int, overflow: str) -> tuple[list[int], str | None]:
    """Make a prompt fit ``context - max_new_tokens``: cut from the left with a warning, or reject.

    >>> fit_prompt([1, 2, 3, 4], context=5, max_new_tokens=2, overflow="truncate")
    ([2, 3, 4], 'prompt of 4 tokens truncated from the left to 3 (context 5, 2 new tokens)')
    """
    room = context - max_new_tokens
    if len(token_ids) <= room:
        return token_ids, None
    what = f"prompt of {len(token_ids)} tokens"
    if overflow == "reject" or room < 1:
        raise PromptTooLong(
            f"{what} does not fit the context of {context} tokens with {max_new_tokens} new tokens; shorten it, "
            "lower max_new_tokens, or let it be truncated from the left (overflow='truncate')"
        )
    message = f"{what} truncated from the left to {room} (context {context}, {max_new_tokens} new tokens)"
    warnings.warn(message, stacklevel=3)
    return token_ids[-room:], message


DTYPES = ("bfloat16", "float32")


def native_bf16() -> bool:
    """Whether this CPU runs bf16 matrix products natively (AVX512-BF16 or AMX); without them bf16 is emulated."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_dtype(dtype: str) -> str:
    """An engine's ``dtype`` argument as a dtype name: ``auto`` is bf16 only where the CPU runs it natively.

    >>> resolve_dtype("float32")
    'float32'
    """
    if dtype not in (*DTYPES, "auto"):
        raise LlmrecError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(DTYPES)}")
    if dtype == "auto":
        return "bfloat16" if native_bf16() else "float32"
    return dtype


def render_prompt(tokenizer: Any, request: Request) -> list[int]:
    """The prompt token ids of a text or chat request (chat template applied, generation prompt added)."""
    if request.messages is not None:
        from llmrec.adapters.hybrid import render_chat

        # The same rendering as hybrid prompts (a final assistant message is a partial answer to continue).
        text = render_chat(tokenizer, request.messages)
        return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    assert request.prompt is not None
    return [int(i) for i in tokenizer(request.prompt, add_special_tokens=True)["input_ids"]]


def grounding_trie(tokenizer: Any, grounding: Grounding) -> TitleTrie:
    """The trie a grounded request decodes through: the cached catalog trie, or one over its candidates."""
    from llmrec.inference.grounding import build_trie, catalog_trie

    if grounding.candidates is None:
        return catalog_trie(grounding.catalog, tokenizer)
    return build_trie(tokenizer, grounding.titles)


def answer_tokens(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of complete answers: each text's tokens (as the start of a turn) followed by the EOS token."""
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [[*ids, tokenizer.eos_token_id] for ids in encoded]


def resolve_completion(completion: Completion, grounding: Grounding | None, trie: TitleTrie | None) -> Completion:
    """Fill ``item_id``/``title``/``resolved_by``: by the constrained tokens when possible, else by parsing text."""
    if grounding is None:
        return completion
    resolution = Resolution(None, None, None)
    if trie is not None and grounding.constrain:
        title = trie.lookup(completion.token_ids)
        if title is None and completion.token_ids[-1:] != [trie.end_id]:
            title = trie.lookup([*completion.token_ids, trie.end_id])
        if title is not None:
            resolution = grounding.resolve_title(title)
    if resolution.item_id is None and grounding.constrain and completion.text.strip() in grounding.titles:
        resolution = grounding.resolve_title(completion.text.strip())
    if resolution.item_id is None:
        resolution = grounding.resolve_text(completion.text)
    completion.item_id, completion.title, completion.resolved_by = (
        resolution.item_id,
        resolution.title,
        resolution.resolved_by,
    )
    return completion


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


ENGINES = ("auto", "vllm", "hf", "openai")


def vllm_available() -> bool:
    """True when vLLM can be imported here."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def engine_name(name: str) -> str:
    """The engine a name stands for: ``auto`` is vLLM when it can be imported here, else hf.

    >>> engine_name("hf")
    'hf'
    """
    if name not in ENGINES:
        raise LlmrecError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    if name == "auto":
        return "vllm" if vllm_available() else "hf"
    return name


def load_engine(name: str = "auto", model: str | None = None, **options: Any) -> Engine:
    """Build an engine by name: ``auto`` (vLLM when importable, else hf), ``vllm``, ``hf`` or ``openai``.

    ``model`` is a local path, a hub id, or ``None`` for the bundled default (for ``openai``: the served
    model's name, default the server's first). ``options`` go to the engine's constructor.
    """
    name = engine_name(name)
    if name == "vllm":
        from llmrec.inference.vllm import VLLMEngine

        return VLLMEngine(model, **options)
    if name == "hf":
        from llmrec.inference.hf import HFEngine

        return HFEngine(model, **options)
    from llmrec.inference.openai import OpenAIEngine

    return OpenAIEngine(model, **options)
