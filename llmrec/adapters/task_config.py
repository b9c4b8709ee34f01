"""What a task dataset asks and how its examples are built (:class:`TaskConfig`), checked when it is made; the
examples themselves are built by :mod:`llmrec.adapters.tasks`."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from llmrec.adapters.templates import LETTERS, NO_CANDIDATES, TEMPLATES
from llmrec.errors import LlmrecError

TASKS = ("rank", "next", "explain", "query")
OUTPUTS = ("generative", "verbalizer", "item")
ITEM_TEXTS = ("title", "hybrid", "vector")


@dataclass
class TaskConfig:
    """What the examples ask and how they are built.

    Task: ``task`` (``rank``, ``next``, ``explain`` or ``query``), ``output`` (rank only: ``generative`` or
    ``verbalizer``), ``item_text`` (``title``, ``hybrid`` or ``vector``). Prompt: ``template`` (a name in
    ``prompts/``; by default the one that fits the three fields above), ``system`` (a system message; by default
    the chat template's own), ``marker`` (explain and query), ``user_vector`` (a ``<user-emb>`` with the encoder's
    user state), ``attributes`` (the history's items with their text attributes), ``counts`` (how many users
    chose each candidate). Scores: ``prior`` (output item:
    the weight of the encoder's own scores added to the LLM's). Sizes: ``max_history``,
    ``num_candidates`` (training only), ``examples_per_user``. Sampling: ``seed``.
    """

    task: str = field(default="rank", metadata={"help": "rank, next, explain or query."})
    max_history: int = field(default=10, metadata={"help": "Most recent items shown as the user's history."})
    num_candidates: int = field(
        default=20,
        metadata={
            "help": "Candidates per training example (the target and uniform negatives the user never interacted "
            "with); valid and test examples always carry the c20 protocol's 20."
        },
    )
    output: str = field(
        default="generative",
        metadata={
            "help": "rank only. generative: answer the target's title; verbalizer: answer its label A-T; item: "
            "score each candidate by the LLM's last hidden state dotted with the candidate's projected vector."
        },
    )
    item_text: str = field(
        default="title",
        metadata={
            "help": "How an item appears in the prompt: title, hybrid (Title <item-emb>) or vector (<item-emb>)."
        },
    )
    examples_per_user: int = field(
        default=3,
        metadata={
            "help": "Training targets per user: the last K positions of the training sequence, or 0 for every "
            "position with at least one item of history."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the training candidates and their order."})
    template: str | None = field(
        default=None, metadata={"help": "Prompt template name; default: the shipped one for task, output, item_text."}
    )
    marker: str = field(default="Answer:", metadata={"help": "explain and query: the line that ends the rationale."})
    user_vector: bool = field(
        default=False,
        metadata={"help": "Also show the encoder's user state after the history as one <user-emb> vector."},
    )
    system: str | None = field(
        default=None,
        metadata={"help": "System message of every prompt; default: none, so the chat template adds its own."},
    )
    prior: float = field(
        default=0.0,
        metadata={
            "help": "output item with user_vector: the weight of the encoder's own score of each item (its user "
            "state dotted with the item's embedding) added to the LLM's, which then learns a correction of its "
            "teacher instead of the whole ranking; 0: the LLM's score alone."
        },
    )
    attributes: bool = field(
        default=False,
        metadata={
            "help": "Show each history item's text attributes after its title, as 'Title (release year: 1995; "
            "class: Action Thriller)'; candidates stay titles (they are the answers)."
        },
    )
    counts: bool = field(
        default=False,
        metadata={
            "help": "Show after each candidate's title how many users chose it in the training data, as 'Title "
            "(chosen by 452 users)': the catalog's popularity, which a small LLM does not know; the answer stays "
            "the title."
        },
    )

    def __post_init__(self) -> None:
        for name, allowed in (("task", TASKS), ("output", OUTPUTS), ("item_text", ITEM_TEXTS)):
            if getattr(self, name) not in allowed:
                raise LlmrecError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.output != "generative" and self.task != "rank":
            raise LlmrecError(f"output {self.output!r} is for the rank task only, not {self.task!r}; use generative")
        if self.max_history < 1:
            raise LlmrecError(f"max_history must be at least 1, got {self.max_history}")
        if self.num_candidates < 2:
            raise LlmrecError(f"num_candidates must be at least 2 (target and negative), got {self.num_candidates}")
        if self.output != "generative" and self.num_candidates > len(LETTERS):
            raise LlmrecError(f"the verbalizer labels at most {len(LETTERS)} candidates, got {self.num_candidates}")
        if self.examples_per_user < 0:
            raise LlmrecError(f"examples_per_user must be 0 (all positions) or more, got {self.examples_per_user}")
        if self.user_vector and self.item_text == "title":
            raise LlmrecError("user_vector needs item vectors in the prompt (item_text hybrid or vector), not titles")
        if self.prior < 0:
            raise LlmrecError(f"prior must be >= 0, got {self.prior}")
        if self.prior and (self.output != "item" or not self.user_vector):
            raise LlmrecError("prior adds the encoder's own scores: it needs output item and user_vector")
        if self.attributes and self.item_text == "vector":
            raise LlmrecError("attributes follow each history item's title, and item_text vector shows none")
        if self.counts and (self.task in NO_CANDIDATES or self.item_text == "vector"):
            raise LlmrecError(
                f"counts follow each candidate's title: a task with candidates (rank, explain) and titles in the "
                f"prompt (item_text title or hybrid), not task {self.task!r} with item_text {self.item_text!r}"
            )

    def titles_only(self, **changes: Any) -> TaskConfig:
        """This task with items shown by their titles alone (no vectors, no user state, no prior), on its default
        template, and ``changes``: the text prompts of a vector task."""
        return replace(self, item_text="title", template=None, user_vector=False, prior=0.0, **changes)

    @property
    def template_name(self) -> str:
        """The template the examples are rendered from."""
        if self.template:
            return self.template
        shipped = TEMPLATES.get((self.task, self.output, self.item_text))
        if shipped is None:
            raise LlmrecError(
                f"no shipped template for task {self.task!r}, output {self.output!r}, item_text {self.item_text!r} "
                f"(item_text 'vector' is shipped for the rank verbalizer only); name one with template:"
            )
        return shipped
