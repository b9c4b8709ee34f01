"""What the local engines share to turn requests into tokens and completions into items.

Both the hf and the vLLM engine render a request with the model's own chat template (:func:`render_prompt`, the
same rendering as hybrid prompts), fit it to the context (:func:`fit_prompt`), score answers as their tokens
followed by the end token (:func:`answer_tokens`) and resolve each completion to a catalog item
(:func:`resolve_completion`), so both see identical prompt tokens and give the same answers.
"""

from __future__ import annotations

import warnings
from typing import Any

from llmrec.adapters.hybrid import render_chat
from llmrec.catalog.catalog import Resolution
from llmrec.catalog.grounding import Grounding
from llmrec.catalog.tries import TitleTrie
from llmrec.inference.engine import Completion, PromptTooLong, Request

OVERFLOW = ("truncate", "reject")


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


def render_prompt(tokenizer: Any, request: Request) -> list[int]:
    """The prompt token ids of a text or chat request (chat template applied, generation prompt added)."""
    if request.messages is not None:
        # The same rendering as hybrid prompts (a final assistant message is a partial answer to continue).
        text = render_chat(tokenizer, request.messages)
        return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    assert request.prompt is not None
    return [int(i) for i in tokenizer(request.prompt, add_special_tokens=True)["input_ids"]]


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


def eos_ids(tokenizer: Any, model: Any) -> set[int]:
    """The token ids that end an answer: the tokenizer's end token and the model's generation config's."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return {int(i) for i in ids if i is not None}
