"""Grounded rollouts for GRPO: a rationale sampled freely, then an answer line held to the recipe's structure.

:class:`AnswerGrounding` is a logits processor over the rollout rows. Each row decodes its rationale freely (but
may not end before answering); once its text ends with the answer marker, the row is held to a newline and then
to its answer: a title trie (the prompt's candidates, or the whole catalog), whose end is the end of the
completion (or, with ``titles`` above 1, a line break and another title, up to ``titles`` of them, as many as
the budget still holds), or, for a row without a trie (``grounding: format``, a search query), one free line of at
most ``line_tokens`` tokens that may not start empty and ends at its first line break. A rationale that runs so long
that only the answer would still fit is closed by forcing the marker, so every rollout is well-formed, and a
grounded one ends in an item the catalog (or the candidate list) has.

:class:`GroundedRollout` is the ``rollout_func`` TRL's ``GRPOTrainer`` calls in place of its own generation:
transformers' ``generate`` on the trainer's model with the trainer's generation config, plus the processor. (On a
GPU, rollouts without grounding use TRL's vLLM integration, ``use_vllm: true``; grounded ones always decode here.)
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from llmrec.catalog.catalog import Catalog
from llmrec.catalog.grounding import Grounding
from llmrec.catalog.tries import TitleTrie
from llmrec.errors import LlmrecError
from llmrec.inference.answers import ANSWER_TOKENS

FREE, FORCED, TITLE, LINE, DONE = range(5)
_BREAKS: dict[tuple[str, int], list[int]] = {}


def line_breaks(tokenizer: Any) -> list[int]:
    """The ids of the tokenizer's tokens whose text holds a line break (kept per tokenizer and vocabulary size)."""
    key = (str(tokenizer.name_or_path), len(tokenizer))
    if key not in _BREAKS:
        _BREAKS[key] = [i for i in range(len(tokenizer)) if "\n" in tokenizer.decode([i])]
    return _BREAKS[key]


class AnswerGrounding(LogitsProcessor):
    """Per row: free rationale (its end-of-text tokens masked), the marker line, then the row's title trie (or,
    for a row whose trie is ``None``, one free line).

    transformers runs a ``generate`` call's own logits processors first, so sampling's top-k/top-p may already have
    cut tokens away: a row left only its end of text closes its rationale there, and a forced or title step whose
    allowed tokens were all cut samples among them uniformly.

    ``tries`` holds one trie per row (``None``: a free answer line of at most ``line_tokens`` tokens);
    ``max_new_tokens`` is the generation budget (the rationale is closed early enough for the marker and the
    longest answer, all its titles, to fit); ``eos_ids`` are the tokens that would end a row; ``titles`` is how
    many titles a trie row's answer names at most, one per line (a query of catalog titles).
    """

    def __init__(
        self,
        tokenizer: Any,
        tries: list[TitleTrie | None],
        marker: str,
        max_new_tokens: int,
        eos_ids: list[int],
        line_tokens: int = ANSWER_TOKENS,
        titles: int = 1,
    ) -> None:
        self.tokenizer, self.tries, self.marker = tokenizer, tries, marker
        self.newline = tokenizer.encode("\n", add_special_tokens=False)
        if titles > 1 and len(self.newline) != 1:
            raise LlmrecError("query_titles above 1 needs a tokenizer whose line break is one token; set it to 1")
        self.titles_left = [titles] * len(tries)
        self.closing = tokenizer.encode(f"\n{marker}\n", add_special_tokens=False)
        self.line_tokens = line_tokens
        answer = max(line_tokens if t is None else t.depth * titles for t in tries)
        self.reserve = len(self.closing) + answer + 1
        self.max_new_tokens, self.eos_ids = max_new_tokens, list(eos_ids)
        self.breaks = line_breaks(tokenizer) if any(t is None for t in tries) else []
        self.ends_line = set(self.breaks)
        self.phase = [FREE] * len(tries)
        # The phase a row enters once its forced tokens are out: its answer, or (after a line's end) done.
        self.after = [TITLE if t is not None else LINE for t in tries]
        self.written = [0] * len(tries)  # tokens of a free answer line so far
        self.pending: list[list[int]] = [[] for _ in tries]
        self.state: list[Any] = [None] * len(tries)
        self.start: int | None = None

    def _advance(self, row: int, ids: torch.Tensor) -> None:
        """Move ``row`` past its last generated token."""
        last = int(ids[-1])
        phase = self.phase[row]
        if phase == FORCED:
            self.pending[row] = self.pending[row][1:]
            if not self.pending[row]:
                self.phase[row] = self.after[row]
                if self.phase[row] == TITLE:
                    self.state[row] = self.tries[row].root
        elif phase == LINE:
            self.written[row] += 1
            if last in self.eos_ids:
                self.phase[row] = DONE
            elif last in self.ends_line:  # the line is over: end the completion there
                self.phase[row], self.pending[row], self.after[row] = FORCED, self.eos_ids[:1], DONE
        elif phase == TITLE and last == self.newline[0]:  # a title is complete and another one follows
            self.titles_left[row] -= 1
            self.state[row] = self.tries[row].root
        elif phase == TITLE:
            self.state[row] = self.tries[row].advance(self.state[row], last)
            if self.state[row] is None or last in self.eos_ids or not len(self.tries[row].allowed(self.state[row])):
                self.phase[row] = DONE
        elif phase == FREE:
            tail = self.tokenizer.decode(ids[-8:].tolist(), skip_special_tokens=True)
            if tail.endswith(f"{self.marker}\n"):
                self.phase[row] = self.after[row]
                if self.phase[row] == TITLE:
                    self.state[row] = self.tries[row].root
            elif tail.rstrip(" ").endswith(self.marker):
                self.phase[row], self.pending[row] = FORCED, list(self.newline)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.start is None:
            self.start = input_ids.shape[1]
        generated = input_ids.shape[1] - self.start
        out = scores.clone()
        for row in range(len(self.tries)):
            if generated:
                self._advance(row, input_ids[row, self.start :])
            if self.phase[row] == FREE and self.max_new_tokens - generated <= self.reserve:
                self._close(row)
            if self.phase[row] == FREE:
                out[row, self.eos_ids] = float("-inf")
                if torch.isinf(out[row]).all():  # the sampler kept only the end of text: the rationale is over
                    self._close(row)
            if self.phase[row] == LINE and self.written[row] >= self.line_tokens:
                self.phase[row], self.pending[row], self.after[row] = FORCED, self.eos_ids[:1], DONE
            elif self.phase[row] == LINE and not self.written[row]:  # the answer may not be empty
                out[row, self.eos_ids + self.breaks] = float("-inf")
                if torch.isinf(out[row]).all():  # the sampler kept only line ends: any other token, alike
                    out[row] = 0.0
                    out[row, self.eos_ids + self.breaks] = float("-inf")
            if self.phase[row] in (FORCED, TITLE):
                phase = self.phase[row]
                allowed = self.pending[row][:1] if phase == FORCED else self.tries[row].allowed(self.state[row])
                allowed = torch.as_tensor(allowed, dtype=torch.long)
                if phase == TITLE and self._another_title(row, generated):
                    allowed[allowed == self.tries[row].end_id] = self.newline[0]  # the title ends its line instead
                keep = scores[row, allowed]
                # The sampler's own top-k/top-p ran first and may have cut every allowed token: then all of them
                # stay possible, equally likely, rather than none.
                out[row] = float("-inf")
                out[row, allowed] = keep if torch.isfinite(keep).any() else torch.zeros_like(keep)
        return out

    def _another_title(self, row: int, generated: int) -> bool:
        """Whether ``row``'s answer may name one more title after the current one: it has titles left, and the
        budget after this step's line break holds the longest title."""
        return self.titles_left[row] > 1 and self.max_new_tokens - generated - 1 >= self.tries[row].depth

    def _close(self, row: int) -> None:
        """End ``row``'s rationale: the marker line is forced, then its answer."""
        self.phase[row], self.pending[row] = FORCED, list(self.closing)


def prompt_key(prompt: Any) -> str:
    """The key of a prompt (chat messages or text): its last message's text."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        return str(prompt[-1].get("content", ""))
    return str(prompt)


class GroundedRollout:
    """TRL ``rollout_func``: generation with each row's answer grounded to its prompt's candidates
    (``candidates``: ``candidates_of`` maps a :func:`prompt_key` to item ids), to the whole ``catalog`` (up to
    ``titles`` titles, one per line), or (``format``) only held to the structure, the answer one free line."""

    def __init__(
        self,
        catalog: Catalog,
        grounding: str,
        marker: str,
        candidates_of: dict[str, list[int]] | None = None,
        titles: int = 1,
    ) -> None:
        self.catalog, self.grounding, self.marker, self.titles = catalog, grounding, marker, titles
        self.candidates_of = candidates_of or {}
        self._tries: dict[str, TitleTrie] = {}

    def trie(self, prompt: Any, tokenizer: Any) -> TitleTrie | None:
        """The title trie a prompt's answer decodes through (``None`` for a free answer line)."""
        if self.grounding == "format":
            return None
        key = prompt_key(prompt) if self.grounding == "candidates" else ""
        if key not in self._tries:
            candidates = self.candidates_of.get(key) if self.grounding == "candidates" else None
            if self.grounding == "candidates" and not candidates:
                raise KeyError("a rollout prompt that is not in the training data: no candidates to ground it to")
            self._tries[key] = Grounding(self.catalog, candidates=candidates).trie(tokenizer)
        return self._tries[key]

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        from trl.models.utils import unwrap_model_for_generation

        tokenizer = trainer.processing_class
        encoded = tokenizer.apply_chat_template(
            prompts, add_generation_prompt=True, tokenize=True, return_dict=True,
            **(getattr(trainer, "chat_template_kwargs", None) or {}),
        )  # fmt: skip
        prompt_ids = [list(ids) for ids in encoded["input_ids"]]
        width = max(len(ids) for ids in prompt_ids)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        device = trainer.accelerator.device
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in prompt_ids], device=device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompt_ids], device=device)
        config = trainer.generation_config
        eos = set(trainer.eos_token_ids)
        tries = [self.trie(p, tokenizer) for p in prompts]
        processor = AnswerGrounding(
            tokenizer, tries, self.marker, config.max_new_tokens, sorted(eos), titles=self.titles
        )
        with (
            unwrap_model_for_generation(
                trainer.model_wrapped, trainer.accelerator, generation_kwargs=trainer.generation_kwargs
            ) as model,
            torch.no_grad(),
        ):
            output = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,
                logits_processor=LogitsProcessorList([processor]),
            )
        completion_ids = []
        for row in output[:, width:].tolist():
            end = next((n for n, token in enumerate(row) if token in eos), len(row) - 1)
            completion_ids.append(row[: end + 1])
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}
