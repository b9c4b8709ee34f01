"""The transformers engine: ``generate`` over left-padded batches, on the CPU or a GPU, in bf16 where the device
runs it natively.

Same features as the vLLM engine: chat templates, ``prompt_embeds`` (as ``inputs_embeds``), PEFT LoRA adapters
per request (loaded once, switched per batch), grounding through a prefix-trie logits processor and JSON-schema
answers through an xgrammar one (:mod:`llmrec.inference.constraints`), sequence
log-probabilities from the raw logits (as vLLM reports them), stop strings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from copy import deepcopy
from itertools import groupby
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

from llmrec.devices import resolve_device, resolve_dtype
from llmrec.errors import LlmrecError
from llmrec.inference.constraints import GrammarLogitsProcessor, JsonGrammars, TrieLogitsProcessor
from llmrec.inference.continuous import DecodingBatch, supports
from llmrec.inference.engine import CAPABILITIES, Completion, Request, Result, SamplingConfig
from llmrec.inference.lora import check_lora
from llmrec.inference.prompting import OVERFLOW, answer_tokens, eos_ids, fit_prompt, render_prompt, resolve_completion
from llmrec.inference.streaming import RowStreamer, TextSink
from llmrec.models.defaults import resolve_model

TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


class HFEngine:
    """transformers ``generate`` behind the Engine protocol.

    ``model``: path, hub id, or ``None`` for the bundled default. ``device``: ``auto`` (a CUDA GPU when there is
    one), ``cpu`` or ``cuda``. ``dtype``: ``auto`` (default: ``bfloat16`` where the device runs it natively, about
    twice fp32's speed on a CPU with bf16 kernels, else ``float32``: emulated bf16 is about three times slower than
    fp32, measured on an AVX2-only CPU), ``bfloat16`` or ``float32``.
    ``batch_size``: requests per ``generate`` call.
    ``max_model_len``: context length (default the model's, at most 4096). ``overflow``: what to do with a
    prompt that does not fit (``truncate`` from the left with a warning, or ``reject``).
    """

    name = "hf"
    capabilities = frozenset({*CAPABILITIES, "stream"})

    def __init__(
        self,
        model: str | None = None,
        dtype: str = "auto",
        batch_size: int = 16,
        max_model_len: int | None = None,
        overflow: str = "truncate",
        device: str = "auto",
    ) -> None:
        self.device = resolve_device(device)
        dtype = resolve_dtype(dtype, self.device)
        if overflow not in OVERFLOW:
            raise LlmrecError(f"overflow must be one of {', '.join(OVERFLOW)}, got {overflow!r}")
        self.model = resolve_model(model)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model)
            self.hf_model = AutoModelForCausalLM.from_pretrained(self.model, dtype=TORCH_DTYPES[dtype])
        except (OSError, ValueError) as error:
            raise LlmrecError(
                f"cannot load model {self.model!r}: {str(error).splitlines()[0]}; give a local checkpoint "
                "directory, or a hub id with the hub reachable"
            ) from None
        self.hf_model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dtype = dtype
        self.batch_size = batch_size
        self.overflow = overflow
        self.context = max_model_len or min(int(getattr(self.hf_model.config, "max_position_embeddings", 4096)), 4096)
        self._adapters: dict[str, str] = {}
        self._grammars: JsonGrammars | None = None

    def close(self) -> None:
        """Drop the model (memory returns to the allocator)."""
        self.hf_model = None

    def decoding_batch(self) -> DecodingBatch | None:
        """A running batch for iteration-level batching (:mod:`llmrec.inference.continuous`), or None for a
        model with sliding-window caches (its requests are batched whole)."""
        return DecodingBatch(self) if supports(self.hf_model) else None

    def input_embedding(self) -> torch.nn.Module:
        """The model's input-embedding module (on the engine's device, in its dtype)."""
        return self.hf_model.get_input_embeddings()

    # -- LoRA ----------------------------------------------------------------------------------------------

    def _adapter(self, lora: str | Path) -> str:
        """Load a LoRA adapter once (checked against the base model first); return its adapter name."""
        path = str(Path(lora).expanduser().resolve())
        if path in self._adapters:
            return self._adapters[path]
        check_lora(path, self.model)
        from peft import PeftModel

        name = f"lora{len(self._adapters)}"
        if not self._adapters:
            self.hf_model = PeftModel.from_pretrained(self.hf_model, path, adapter_name=name)
        else:
            self.hf_model.load_adapter(path, adapter_name=name)
        self.hf_model.eval()
        self._adapters[path] = name
        return name

    # -- generation ----------------------------------------------------------------------------------------

    def prompt_ids(self, request: Request, max_new_tokens: int) -> tuple[list[int], str | None]:
        """The request's prompt tokens, fitted to the context (``overflow`` rule); ``(ids, warning)``."""
        return fit_prompt(render_prompt(self.tokenizer, request), self.context, max_new_tokens, self.overflow)

    def generate(
        self, requests: list[Request], params: SamplingConfig, on_text: TextSink | None = None
    ) -> list[Result]:
        """Answer every request; batches group requests with the same adapter and input kind. ``on_text(index,
        delta)`` (one answer per request, ``n`` 1) receives each request's new text as it is decoded."""
        if on_text is not None and params.n != 1:
            raise LlmrecError("streaming answers text as it is decoded, one answer per request: use n=1")
        prepared = [self._prepare(r, params) for r in requests]
        results: list[Result | None] = [None] * len(requests)

        def key(i: int) -> tuple[str, bool]:
            return (str(requests[i].lora or ""), requests[i].prompt_embeds is not None)

        order = sorted(range(len(requests)), key=lambda i: (key(i), prepared[i]["length"]))
        for (lora, _), group in groupby(order, key=key):
            members = list(group)
            for start in range(0, len(members), self.batch_size):
                chunk = members[start : start + self.batch_size]
                streamer = RowStreamer(self.tokenizer, chunk, on_text) if on_text is not None else None
                answers = self._generate_batch([prepared[i] for i in chunk], lora, params, streamer)
                for i, result in zip(chunk, answers, strict=True):
                    results[i] = result
        return [r for r in results if r is not None]

    @torch.inference_mode()
    def score(self, requests: list[Request], continuations: list[list[str]]) -> list[list[float]]:
        """Sum of token log-probs of each continuation (plus the end token) after the request's prompt.

        The prompt runs once per request; its key/value cache is shared by all of the request's continuations,
        which run together as one batch. Requests are scored under their own LoRA adapter, and those without one
        under the base model, whatever adapters earlier requests loaded.
        """
        prepared = []
        for request, texts in zip(requests, continuations, strict=True):
            answers = answer_tokens(self.tokenizer, texts)
            width = max((len(a) for a in answers), default=0)
            prepared.append((self._prompt(request, width), answers))
        scores: list[list[float]] = [[] for _ in requests]
        for group in self._by_adapter(requests):
            for index in group:
                prompt, answers = prepared[index]
                scores[index] = self._score_request(prompt, answers) if answers else []
        return scores

    @torch.inference_mode()
    def last_hidden(self, requests: list[Request]) -> torch.Tensor:
        """``[R, H]`` float32: each request's last hidden state at its prompt's end (after the final norm: what
        the LM head reads), under the request's LoRA adapter (or the base model).

        Prompts go ``batch_size`` at a time (similar lengths together), right-padded: under causal attention no
        real position sees the padding, so each state is the one its prompt gives alone (up to float rounding)."""
        if not requests:
            return torch.zeros(0, self.hf_model.config.hidden_size)
        states: list[torch.Tensor | None] = [None] * len(requests)
        for group in self._by_adapter(requests):
            prompts_of = {i: self._embed(self._prompt(requests[i])) for i in group}
            group.sort(key=lambda i: len(prompts_of[i]))
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                prompts = [prompts_of[i] for i in chunk]
                lengths = torch.tensor([len(p) for p in prompts])
                embeds = torch.nn.utils.rnn.pad_sequence(prompts, batch_first=True)  # (B, L, H), zeros after
                mask = (torch.arange(embeds.shape[1])[None] < lengths[:, None]).long().to(self.device)
                out = self.hf_model(
                    inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True, logits_to_keep=1
                )
                last = out.hidden_states[-1][torch.arange(len(chunk)), lengths - 1].float().cpu()  # (B, H)
                for i, state in zip(chunk, last, strict=True):
                    states[i] = state
        return torch.stack([s for s in states if s is not None])

    def _by_adapter(self, requests: list[Request]) -> Iterator[list[int]]:
        """The requests' indices grouped by LoRA adapter, each group yielded while its adapter (or, for requests
        without one, the base model) is active."""

        def lora_of(index: int) -> str:
            return str(requests[index].lora or "")

        for lora, group in groupby(sorted(range(len(requests)), key=lora_of), key=lora_of):
            with self._adapter_context(lora):
                yield list(group)

    def _prompt(self, request: Request, max_new_tokens: int = 0) -> list[int] | torch.Tensor:
        """A request's prompt as its ``prompt_embeds``, or as token ids fitted to the context."""
        if request.prompt_embeds is not None:
            return request.prompt_embeds
        return self.prompt_ids(request, max_new_tokens)[0]

    def _embed(self, prompt: list[int] | torch.Tensor) -> torch.Tensor:
        """``[L, H]`` input embeddings of a prompt given as token ids or as ``prompt_embeds``."""
        embedding = self.hf_model.get_input_embeddings()
        if isinstance(prompt, torch.Tensor):
            return prompt.to(device=embedding.weight.device, dtype=embedding.weight.dtype)
        return embedding(torch.tensor(prompt, dtype=torch.long, device=embedding.weight.device))

    def _score_request(self, prompt: list[int] | torch.Tensor, answers: list[list[int]]) -> list[float]:
        """Log-probs of ``answers`` after one prompt: the prompt once, then the answers against its cache."""
        head = self._embed(prompt)  # (L, H)
        out = self.hf_model(inputs_embeds=head[None], use_cache=True)
        first = out.logits[0, -1].float().log_softmax(-1)  # (V,): the first answer token
        scores = [float(first[answer[0]]) for answer in answers]
        width = max(len(answer) for answer in answers) - 1  # each answer but its last token is fed back
        for start in range(0, len(answers) if width else 0, self.batch_size):
            chunk = answers[start : start + self.batch_size]
            cache = deepcopy(out.past_key_values) if start + len(chunk) < len(answers) else out.past_key_values
            cache.batch_repeat_interleave(len(chunk))
            ids = torch.full((len(chunk), width), int(self.tokenizer.pad_token_id), dtype=torch.long)
            mask = torch.zeros(len(chunk), len(head) + width, dtype=torch.long)
            mask[:, : len(head)] = 1
            for row, answer in enumerate(chunk):
                ids[row, : len(answer) - 1] = torch.tensor(answer[:-1], dtype=torch.long)
                mask[row, len(head) : len(head) + len(answer) - 1] = 1  # right padding: positions stay exact
            logprobs = self.hf_model(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), past_key_values=cache
            ).logits
            logprobs = logprobs.float().log_softmax(-1)  # (C, W, V)
            for row, answer in enumerate(chunk):
                rest = torch.tensor(answer[1:], dtype=torch.long)
                scores[start + row] += float(logprobs[row, torch.arange(len(rest)), rest].sum())
        return scores

    def _adapter_context(self, lora: str) -> Any:
        """Activate ``lora`` (loading it once), or switch every loaded adapter off for base-model requests."""
        if lora:
            name = self._adapter(lora)  # before touching self.hf_model: the first adapter wraps it
            self.hf_model.set_adapter(name)
            return nullcontext()
        return self.hf_model.disable_adapter() if self._adapters else nullcontext()

    def _grammar(self, schema: dict[str, Any]) -> Any:
        if self._grammars is None:
            self._grammars = JsonGrammars(self.tokenizer, int(self.hf_model.config.vocab_size))
        return self._grammars.compile(schema)

    def _prepare(self, request: Request, params: SamplingConfig) -> dict[str, Any]:
        trie = None
        max_new = params.max_new_tokens
        if request.grounding is not None and request.grounding.constrain:
            trie = request.grounding.trie(self.tokenizer)
            max_new = max(max_new, trie.depth)
        grammar = self._grammar(request.json_schema) if request.json_schema is not None else None
        warning = None
        if request.prompt_embeds is not None:
            embeds = request.prompt_embeds
            hidden = self.hf_model.get_input_embeddings().weight.shape[1]
            if embeds.ndim != 2 or embeds.shape[1] != hidden:
                raise LlmrecError(f"prompt_embeds must be [L, {hidden}] for {self.model}, got {list(embeds.shape)}")
            if embeds.shape[0] + max_new > self.context:
                raise LlmrecError(
                    f"prompt_embeds of {embeds.shape[0]} positions do not fit the context of {self.context} with "
                    f"{max_new} new tokens"
                )
            return {
                "request": request, "embeds": embeds, "length": embeds.shape[0], "trie": trie, "grammar": grammar,
                "max_new": max_new,
            }  # fmt: skip
        ids, warning = self.prompt_ids(request, max_new)
        return {
            "request": request, "ids": ids, "length": len(ids), "trie": trie, "grammar": grammar, "max_new": max_new,
            "warn": warning,
        }  # fmt: skip

    @torch.inference_mode()
    def _generate_batch(
        self, batch: list[dict[str, Any]], lora: str, params: SamplingConfig, streamer: Any = None
    ) -> list[Result]:
        adapter = self._adapter_context(lora)  # first: loading the first adapter wraps the model
        model = self.hf_model
        width = max(item["length"] for item in batch)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, item in enumerate(batch):
            mask[row, width - item["length"] :] = 1
        inputs: dict[str, Any] = {"attention_mask": mask.to(self.device)}
        if "embeds" in batch[0]:
            embedding = model.get_input_embeddings()
            hidden = embedding.weight.shape[1]
            embeds = torch.zeros(len(batch), width, hidden, dtype=embedding.weight.dtype)
            for row, item in enumerate(batch):
                embeds[row, width - item["length"] :] = item["embeds"].to(embedding.weight.dtype)
            inputs["inputs_embeds"] = embeds.to(self.device)
        else:
            ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
            for row, item in enumerate(batch):
                ids[row, width - item["length"] :] = torch.tensor(item["ids"], dtype=torch.long)
            inputs["input_ids"] = ids.to(self.device)
        sample = not params.greedy
        copies = params.n if sample else 1
        tries = [item["trie"] for item in batch for _ in range(copies)]
        grammars = [item["grammar"] for item in batch for _ in range(copies)]
        kwargs: dict[str, Any] = {
            "max_new_tokens": max(item["max_new"] for item in batch),
            "do_sample": sample,
            "num_return_sequences": copies,
            "return_dict_in_generate": True,
            "output_logits": True,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=params.stop, tokenizer=self.tokenizer)
        processors = []
        if any(t is not None for t in tries):
            processors.append(TrieLogitsProcessor(tries))
        if any(g is not None for g in grammars):
            processors.append(GrammarLogitsProcessor(grammars, int(model.config.vocab_size)))
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        torch.manual_seed(params.seed)
        if streamer is not None:
            kwargs["streamer"] = streamer
        with adapter:
            out = model.generate(**inputs, **kwargs)
        steps = len(out.logits)
        new_tokens = out.sequences[:, -steps:] if steps else out.sequences[:, :0]
        logprobs = torch.stack([step.float().log_softmax(-1) for step in out.logits], dim=1)  # (R, S, V)
        chosen = logprobs.gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)  # (R, S)
        eos = eos_ids(self.tokenizer, model)
        results = []
        for index, item in enumerate(batch):
            completions = []
            for copy in range(params.n):
                row = index * copies + (copy if sample else 0)
                completions.append(self._completion(new_tokens[row], chosen[row], logprobs[row], eos, params, item))
            warns = [item["warn"]] if item.get("warn") else []
            results.append(Result(completions, prompt_tokens=item["length"], warnings=warns))
        return results

    def _completion(
        self,
        tokens: torch.Tensor,
        chosen: torch.Tensor,
        logprobs: torch.Tensor,
        eos: set[int],
        params: SamplingConfig,
        item: dict[str, Any],
    ) -> Completion:
        ids = tokens.tolist()
        end = next((i + 1 for i, t in enumerate(ids) if t in eos), None)
        finish = "stop" if end is not None else "length"
        ids = ids[:end] if end is not None else ids
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if params.stop:
            cuts = [text.find(s) for s in params.stop if s in text]
            if cuts:
                text, finish = text[: min(cuts)], "stop"
                # As vLLM does: the tokens end with the one that completes the stop string; later ones (generated
                # while other rows of the batch went on) are not part of the answer.
                ids = ids[: self._stop_length(ids, params.stop)]
        top = None
        if params.logprobs:
            values, indices = logprobs[: len(ids)].topk(params.logprobs, dim=-1)
            top = [dict(zip(i.tolist(), v.tolist(), strict=True)) for i, v in zip(indices, values, strict=True)]
        completion = Completion(
            text=text,
            token_ids=ids,
            logprob=float(chosen[: len(ids)].sum()),
            finish_reason=finish,
            top_logprobs=top,
        )
        request: Request = item["request"]
        return resolve_completion(completion, request.grounding, item["trie"])

    def _stop_length(self, ids: list[int], stop: list[str]) -> int:
        """The fewest leading tokens of ``ids`` whose text contains one of the ``stop`` strings."""
        for length in range(1, len(ids) + 1):
            text = self.tokenizer.decode(ids[:length], skip_special_tokens=True)
            if any(s in text for s in stop):
                return length
        return len(ids)
