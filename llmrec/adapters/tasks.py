"""Task datasets for the LLM recommenders: one prompt and answer per (user, target), from a leave-one-out split.

- ``rank`` (LLaRA): the user's recent history and a list of candidates, the target among them; the answer is the
  target's title (``generative``) or its label letter (``verbalizer``, LlamaRec: candidates listed as ``A. Title``
  ... ``T. Title``, so one forward pass ranks all of them by their letters' logits), or none (``item``: the same
  prompt, and the LLM's last hidden state scores each candidate by a dot product with the candidate's projected
  item vector, the item vectors serving as output embeddings as the LLM's tied token embeddings do for words).
- ``next``: the history alone; the answer is the target's title (free generation, grounded to the whole catalog).
- ``explain``: the rank prompt asking for a short rationale, then the answer marker and a title; the answer is the
  target's title, what should follow the marker (there are no gold rationales: these rows feed RL rewards and
  reasoning evaluation, not SFT).
- ``query`` (Rec-R1): the history alone, asking for a short rationale, then the answer marker and a search query
  for a frozen retriever over the whole catalog; the answer is the target's title. There is no gold query: RL
  rewards and retrieval evaluation read these rows, and SFT (a warm start for RL) learns the structure from
  :func:`query_completions`, the target's title as the query that finds it, after a rationale stated from the
  history.

Training examples come only from each user's training prefix: the targets are its last ``examples_per_user``
positions and their history is what precedes them, so nothing after the prefix (the valid and test targets)
reaches a training prompt; their candidates are the target and items the user never interacted with (in the whole
sequence, so never a valid or test item either), drawn with the config's seed.

Validation and test examples carry exactly the ``c20`` protocol's 20 candidates, in the order the protocol stored
them (already shuffled: the target at a uniform random position), whatever the seed, so LLM rerankers and encoders
are scored on the very same candidates, and every LLM on the very same prompts.

With ``item_text="hybrid"`` every item in the prompt is ``Title <item-emb>``, with ``item_text="vector"`` it is
``<item-emb>`` alone (no title: a prompt a quarter the length, where the LLM can only go by the item vectors);
``item_ids`` lists the items in placeholder order (history, then candidates) for
:class:`llmrec.adapters.HybridPrompter`. With ``user_vector`` the prompt also shows the encoder's user state after
the history (the whole prefix before the target, not only the items shown) as one ``<user-emb>``; its vector is in
``user_vectors``, computed by the :class:`llmrec.adapters.UserStates` passed to :func:`build_examples`. With
``attributes`` each history item also shows its text attributes (``Title (release year: 1995; class: Drama)``):
what a query writer needs to name the genres and years a search engine indexes. With ``counts`` each candidate
also shows how many users chose it (``Title (chosen by 452 users)``): in training, validation and test examples
counted over the training prefixes alone (no evaluation target is counted), in served prompts over every known
interaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llmrec.adapters.task_config import TaskConfig
from llmrec.adapters.templates import LETTERS, NO_CANDIDATES, check_template
from llmrec.data.dataset import Dataset, user_counts
from llmrec.data.splits import Split
from llmrec.errors import LlmrecError
from llmrec.prompts import render, with_counts
from llmrec.ranking.protocols import c20_candidates

WHICH = ("train", "valid", "test")
_Row = tuple[int, np.ndarray, int, np.ndarray, int]  # user, history, target, candidates (empty for next), cutoff
UserStateFn = Callable[[list[np.ndarray]], Any]  # histories -> [E, D] user states (llmrec.adapters.UserStates)


@dataclass
class TaskExample:
    """One prompt and its answer.

    ``history`` (item ids, most recent last) and ``candidates`` (rank and explain; empty for next and query) are
    what the prompt shows, in prompt order; ``position`` is the target's index in the user's whole sequence;
    ``item_ids`` are the items of the ``<item-emb>`` placeholders in placeholder order (history then candidates;
    empty when item_text is title); ``answer`` is the target's title, or its
    letter for the verbalizer, whose ``labels`` are the candidates' letters in candidate order;
    ``user_vectors`` holds the vector of the ``<user-emb>`` placeholder (user_vector tasks only); ``counts`` how
    many users chose each candidate, in candidate order, as the prompt shows them (tasks with counts only).
    """

    user: int
    history: list[int]
    candidates: list[int]
    target: int
    prompt: list[dict[str, str]]
    item_ids: list[int]
    answer: str
    labels: list[str]
    user_vectors: list[list[float]] = field(default_factory=list)
    position: int = 0
    counts: list[int] = field(default_factory=list)

    @property
    def target_index(self) -> int:
        """The target's position among the candidates."""
        return self.candidates.index(self.target)

    def as_row(self) -> dict[str, Any]:
        """A plain dict (a ``datasets`` row, or a :class:`llmrec.adapters.HybridCollator` row)."""
        return asdict(self)


def _check_user_states(config: TaskConfig, user_states: UserStateFn | None) -> None:
    if config.user_vector and user_states is None:
        raise LlmrecError("user_vector tasks need the encoder's user states: pass user_states=UserStates(run, data)")


def build_examples(
    dataset: Dataset, split: Split, which: str, config: TaskConfig, user_states: UserStateFn | None = None
) -> list[TaskExample]:
    """The ``train``, ``valid`` or ``test`` examples of ``config``'s task, in user order (then target position).

    ``split`` must come from ``dataset`` (usually :func:`llmrec.data.splits.leave_one_out_split`). The c20
    candidates of valid and test are cached under ``DATASET/splits/``, as the encoders' evaluation caches them.
    ``user_states`` (user_vector tasks) maps each example's whole history before its target to its user state.
    """
    if which not in WHICH:
        raise LlmrecError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if len(split.sequences) != dataset.num_users + 1:
        raise LlmrecError(
            f"the split has {len(split.sequences) - 1} users but {dataset.path} has {dataset.num_users}; "
            "make the split from this dataset"
        )
    template = check_template(config)
    _check_user_states(config, user_states)
    if which == "train":
        rows = _train_rows(split, dataset.num_items, config)
    else:
        rows = _eval_rows(dataset, split, which, config)
    titles, shown = dataset.titles.tolist(), _history_texts(dataset, config)
    counts = user_counts(split.train_sequences(), dataset.num_items) if config.counts else None
    examples = [_example(titles, shown, template, config, *row[:4], counts=counts) for row in rows]
    for example, row in zip(examples, rows, strict=True):
        example.position = row[4]
    if config.user_vector and user_states is not None:
        states = user_states([split.sequences[row[0]][: row[4]] for row in rows])  # (E, D)
        for example, state in zip(examples, states, strict=True):
            example.user_vectors = [[float(x) for x in state]]
    return examples


def query_completions(dataset: Dataset, examples: list[TaskExample], marker: str, words: int = 2) -> list[str]:
    """Supervised completions of ``query`` examples, for a warm start of Rec-R1's RL: a rationale stated from
    the prompt's history (its latest item, and the ``words`` words most common in its items' text attributes, e.g.
    their genres), the ``marker`` line, and the target's title as the query (the query that finds it).

    The rationale says only what the history shows; it teaches the structure, and RL is free to change it.
    """
    attributes = dataset.text_attributes
    out = []
    for example in examples:
        counts = Counter(
            word
            for item in example.history
            for value in attributes.get(int(item), {}).values()
            for word in value.split()
            if any(ch.isalpha() for ch in word)
        )
        common = [word for word, _ in counts.most_common(words)]  # ties keep first-seen order
        latest = dataset.titles[example.history[-1]] if example.history else None
        parts = [f"They recently enjoyed {latest}." if latest else "The history is short."]
        if common:
            parts.append(f"Most of their items are {' and '.join(common)}.")
        out.append(f"{' '.join(parts)}\n{marker}\n{dataset.titles[example.target]}")
    return out


def _train_rows(split: Split, num_items: int, config: TaskConfig) -> list[_Row]:
    rng = np.random.default_rng(config.seed)
    no_candidates = np.zeros(0, dtype=np.int64)
    rows: list[_Row] = []
    for user, (sequence, length) in enumerate(zip(split.sequences, split.train_len, strict=True)):
        first = 1 if config.examples_per_user == 0 else max(1, int(length) - config.examples_per_user)
        positions = np.arange(first, int(length))
        if not len(positions):
            continue
        targets = sequence[positions]
        if config.task in NO_CANDIDATES:
            candidates = [no_candidates] * len(positions)
        else:
            seen = np.zeros(num_items + 1, dtype=bool)
            seen[sequence] = True
            unseen = np.flatnonzero(~seen[1:]) + 1
            if len(unseen) < config.num_candidates - 1:
                raise LlmrecError(
                    f"user {user} has interacted with all but {len(unseen)} items, too many to draw "
                    f"{config.num_candidates - 1} negatives; lower num_candidates"
                )
            candidates = _with_negatives(rng, targets, unseen, config.num_candidates)
        for position, target, row in zip(positions, targets, candidates, strict=True):
            history = sequence[max(0, position - config.max_history) : position]
            rows.append((user, history, int(target), row, int(position)))
    return rows


def _with_negatives(rng: np.random.Generator, targets: np.ndarray, unseen: np.ndarray, size: int) -> np.ndarray:
    """``[K, size]`` rows: each target at a uniform position among ``size - 1`` distinct uniform draws of
    ``unseen``."""
    negatives = unseen[_distinct_draws(rng, len(unseen), len(targets), size - 1)]  # (K, size - 1)
    slot = rng.integers(0, size, len(targets))  # (K,)
    is_target = np.arange(size)[None, :] == slot[:, None]  # (K, size)
    out = np.empty((len(targets), size), dtype=np.int64)
    out[is_target] = targets
    out[~is_target] = negatives.ravel()  # row-major: each row's non-target columns take its own negatives
    return out


def _distinct_draws(rng: np.random.Generator, n: int, rows: int, count: int) -> np.ndarray:
    """``[rows, count]`` indices into ``range(n)``, distinct within each row, uniformly drawn in random order."""
    if n < 4 * count:  # few items to choose from: rejection would rarely succeed, a random permutation always does
        return np.argsort(rng.random((rows, n)), axis=1)[:, :count]
    draws = rng.integers(0, n, (rows, count))
    while True:
        ordered = np.sort(draws, axis=1)
        repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not repeated.any():
            return draws
        draws[repeated] = rng.integers(0, n, (int(repeated.sum()), count))


def _eval_rows(dataset: Dataset, split: Split, which: str, config: TaskConfig) -> list[_Row]:
    examples = split.eval_set(which)
    if config.task in NO_CANDIDATES:
        candidates = np.zeros((len(examples), 0), dtype=np.int64)
    else:
        candidates = c20_candidates(split, which, dataset.num_items, dataset.path / "splits")
    rows: list[_Row] = []
    for user, cutoff, target, row in zip(examples.users, examples.cutoffs, examples.targets, candidates, strict=True):
        history = split.sequences[user][max(0, cutoff - config.max_history) : cutoff]
        rows.append((int(user), history, int(target), row, int(cutoff)))
    return rows


def _history_texts(dataset: Dataset, config: TaskConfig) -> np.ndarray:
    """How a history item appears in the prompt, by item id: its title, or with ``attributes`` its described
    title."""
    return dataset.described_titles if config.attributes else dataset.titles


def _example(
    titles: list[str],
    shown: np.ndarray,
    template: str,
    config: TaskConfig,
    user: int,
    history: np.ndarray,
    target: int,
    candidates: np.ndarray,
    counts: np.ndarray | None = None,
) -> TaskExample:
    history_ids, candidate_ids = history.tolist(), candidates.tolist()
    letters = list(LETTERS[: len(candidate_ids)])
    chosen = [int(counts[i]) for i in candidate_ids] if counts is not None else None
    text = render(
        template,
        history=[str(shown[i]) for i in history_ids],
        candidates=with_counts([titles[i] for i in candidate_ids], chosen),
        labels=letters,
        marker=config.marker,
        user=config.user_vector,
        counts=config.counts,
    )
    verbalizer = config.output != "generative"  # verbalizer and item prompts label the candidates A, B, ...
    return TaskExample(
        user=user,
        history=history_ids,
        candidates=candidate_ids,
        target=target,
        prompt=[
            *([{"role": "system", "content": config.system}] if config.system else []),
            {"role": "user", "content": text},
        ],
        item_ids=[*history_ids, *candidate_ids] if config.item_text != "title" else [],
        answer="" if not target else letters[candidate_ids.index(target)] if verbalizer else titles[target],
        labels=letters if verbalizer else [],
        counts=chosen or [],
    )


def prompt_example(
    dataset: Dataset,
    config: TaskConfig,
    user: int,
    history: list[int],
    candidates: list[int],
    user_states: UserStateFn | None = None,
    counts: np.ndarray | None = None,
) -> TaskExample:
    """An example to serve rather than train on: ``history`` (most recent last, cut to ``max_history`` in the
    prompt; all of it makes the user state of user_vector tasks) and ``candidates`` (rank and explain) of
    ``user``, with no known target (``target`` 0, ``answer`` empty). ``counts`` (tasks with ``counts``, by item
    id) default to every interaction of the dataset (``Dataset.item_users``); training passes
    :func:`llmrec.data.dataset.user_counts` of its split's training prefixes."""
    if config.task not in NO_CANDIDATES and not candidates:
        raise LlmrecError(f"task {config.task!r} needs candidates to choose from")
    if config.output != "generative" and len(candidates) > len(LETTERS):
        raise LlmrecError(f"the verbalizer labels at most {len(LETTERS)} candidates, got {len(candidates)}")
    _check_user_states(config, user_states)
    history_ids = np.asarray(history[-config.max_history :], dtype=np.int64)
    rows = np.asarray(candidates if config.task not in NO_CANDIDATES else [], dtype=np.int64)
    shown = _history_texts(dataset, config)
    if config.counts and counts is None:
        counts = dataset.item_users
    template = check_template(config)
    example = _example(dataset.titles.tolist(), shown, template, config, user, history_ids, 0, rows, counts=counts)
    if config.user_vector and user_states is not None:
        example.user_vectors = [[float(x) for x in user_states([np.asarray(history, dtype=np.int64)])[0]]]
    return example
