"""Prompt templates of the task datasets: which shipped template fits a task, and a probe that checks a template
shows what the task needs (every item in order, as titles, ``Title <item-emb>`` or ``<item-emb>`` alone, one
``<user-emb>`` when asked, the candidates' label letters for the verbalizer)."""

from __future__ import annotations

import re
import string
from typing import Protocol

from llmrec.adapters.hybrid import PLACEHOLDER, USER_PLACEHOLDER
from llmrec.errors import LlmrecError
from llmrec.prompts import render

LETTERS = string.ascii_uppercase
NO_CANDIDATES = ("next", "query")  # tasks whose prompt shows the history alone
# The shipped template of each (task, output, item_text); next and explain answer with a title, query with a query.
TEMPLATES = {
    ("rank", "generative", "title"): "rank_candidates",
    ("rank", "generative", "hybrid"): "rank_candidates_hybrid",
    ("rank", "verbalizer", "title"): "rank_candidates_labelled",
    ("rank", "verbalizer", "hybrid"): "rank_candidates_labelled_hybrid",
    ("rank", "verbalizer", "vector"): "rank_candidates_labelled_vector",
    ("rank", "item", "title"): "rank_candidates_labelled",
    ("rank", "item", "hybrid"): "rank_candidates_labelled_hybrid",
    ("rank", "item", "vector"): "rank_candidates_labelled_vector",
    ("next", "generative", "title"): "next_item",
    ("next", "generative", "hybrid"): "next_item_hybrid",
    ("explain", "generative", "title"): "reason_candidates",
    ("explain", "generative", "hybrid"): "reason_candidates_hybrid",
    ("query", "generative", "title"): "search_query",
}


class TemplateSpec(Protocol):
    """What a template is checked against (a :class:`llmrec.adapters.tasks.TaskConfig`)."""

    task: str
    output: str
    item_text: str
    marker: str
    user_vector: bool

    @property
    def template_name(self) -> str: ...


def check_template(config: TemplateSpec) -> str:
    """The config's template name, once a probe rendering shows it fits the config: every history item (and every
    candidate, for rank and explain) in order, as its title (item_text title), its title followed by one
    ``<item-emb>`` (hybrid) or one ``<item-emb>`` alone (vector); each candidate on its label's line for the
    verbalizer."""
    name = config.template_name
    history = [f"@@history-{i}@@" for i in range(2)]
    candidates = [] if config.task in NO_CANDIDATES else [f"@@candidate-{i}@@" for i in range(3)]
    labels = list(LETTERS[: len(candidates)])
    text = render(
        name, history=history, candidates=candidates, labels=labels, marker=config.marker, user=config.user_vector
    )
    users = text.count(USER_PLACEHOLDER)
    if users != int(config.user_vector):
        want = f"one {USER_PLACEHOLDER}, as user_vector needs" if config.user_vector else f"no {USER_PLACEHOLDER}"
        raise LlmrecError(
            f"prompt template {name!r} shows {users} {USER_PLACEHOLDER} placeholder(s); it must show {want} "
            "(the shipped rank_candidates_labelled_vector and _hybrid templates show one when user_vector is set)"
        )
    probes = [*history, *candidates]
    found = re.findall("|".join(re.escape(s) for s in [*probes, PLACEHOLDER]), text)
    titles = [s for s in found if s != PLACEHOLDER]
    shown = "every history item" + ("" if config.task in NO_CANDIDATES else " and every candidate")
    expected = {
        "title": probes,
        "hybrid": [part for probe in probes for part in (probe, PLACEHOLDER)],
        "vector": [PLACEHOLDER] * len(probes),
    }[config.item_text]
    if config.item_text == "title" and PLACEHOLDER in found:
        raise LlmrecError(
            f"prompt template {name!r} has {PLACEHOLDER} placeholders but item_text is 'title'; set item_text to "
            "hybrid or vector or choose a template without placeholders"
        )
    if config.item_text != "vector" and titles != probes:
        raise LlmrecError(
            f"prompt template {name!r} does not show {shown} once, in order, as the {config.task} task needs; "
            "choose a template made for this task"
        )
    if found != expected:
        how = {
            "hybrid": f"does not put one {PLACEHOLDER} after each item title, as item_text 'hybrid' needs (history, "
            "then candidates); use a *_hybrid template or add the placeholders",
            "vector": f"does not show {shown} as one {PLACEHOLDER} without its title, as item_text 'vector' needs; "
            "use a *_vector template",
        }[config.item_text]
        raise LlmrecError(f"prompt template {name!r} {how}")
    if config.output == "verbalizer":
        shows = [PLACEHOLDER] * len(candidates) if config.item_text == "vector" else candidates
        lines = [rf"(?m)^.*\b{label}\b.*{re.escape(item)}" for label, item in zip(labels, shows, strict=True)]
        if not all(re.search(line, text) for line in lines):
            raise LlmrecError(
                f"prompt template {name!r} does not show each candidate's label letter on its line, as the "
                "verbalizer needs; use rank_candidates_labelled or a template like it"
            )
    return name
