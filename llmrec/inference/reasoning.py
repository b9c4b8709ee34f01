"""Think, then recommend: several sampled reasoning paths, each grounded, pruned for consistency, then voted.

For each user: (1) sample ``paths`` rationales from the ``reason_candidates`` prompt, each stopped at the answer
marker; (2) continue every rationale after the marker with decoding grounded to the candidates, so each path
names exactly one real candidate; (3) prune (REG4Rec's consistency-oriented pruning) the paths whose answer
contradicts their own rationale (``self``: the rationale's last-mentioned candidate is another one) or the
other paths (``majority``: an answer fewer than ``min_agreement`` paths reached, while some answer reached
that many); (4) rank the answers by a vote of the surviving paths, each weighted by its length-normalised
sequence probability ``exp(logprob / tokens)``; the candidates no path chose follow, ordered by the model's
log-probability of each as the direct answer. Every path's trace is kept.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from llmrec.catalog.catalog import Catalog, normalise_title
from llmrec.catalog.grounding import Grounding
from llmrec.errors import LlmrecError
from llmrec.inference.answers import answer_turn
from llmrec.inference.engine import Engine, Request, SamplingConfig, ScoringUnavailable
from llmrec.prompts import render, with_counts

PRUNE_RULES = ("none", "self", "majority", "both")


@dataclass
class ReasoningConfig:
    """How reasoning generation samples, prunes and votes.

    Sampling: ``paths`` (rationales per user), ``temperature``, ``top_p``, ``max_reasoning_tokens``, ``seed``.
    Pruning: ``prune`` (``none``, ``self``, ``majority`` or ``both``), ``min_agreement`` (paths an answer needs
    to survive ``majority`` pruning). Prompt: ``template`` (a name in ``prompts/``) and ``marker`` (the line that
    ends the rationale). Ranking: ``rank_rest`` (order the candidates no path chose by their direct-answer
    log-probability; else keep their given order).
    """

    paths: int = field(default=4, metadata={"help": "Reasoning paths sampled per user."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature of the rationales."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus mass of the rationales."})
    max_reasoning_tokens: int = field(default=128, metadata={"help": "Most tokens per rationale."})
    seed: int = field(default=0, metadata={"help": "Sampling seed."})
    prune: str = field(default="both", metadata={"help": "Pruning rule: none, self, majority or both."})
    min_agreement: int = field(default=2, metadata={"help": "Paths an answer needs to survive majority pruning."})
    template: str = field(default="reason_candidates", metadata={"help": "Prompt template name."})
    marker: str = field(default="Answer:", metadata={"help": "Line that ends the rationale."})
    rank_rest: bool = field(default=True, metadata={"help": "Rank unchosen candidates by answer log-probability."})

    def __post_init__(self) -> None:
        if self.paths < 1:
            raise LlmrecError(f"paths must be at least 1, got {self.paths}")
        _check_rule(self.prune)
        if self.min_agreement < 1:
            raise LlmrecError(f"min_agreement must be at least 1, got {self.min_agreement}")


@dataclass
class ReasoningTask:
    """One user to recommend for: history and candidates as item ids of ``catalog``."""

    catalog: Catalog
    history: list[int]
    candidates: list[int]
    lora: str | Path | None = None
    counts: list[int] | None = None  # how many users chose each candidate, shown beside its title (task counts)


@dataclass
class ReasoningPath:
    """One sampled rationale, the candidate it led to, and whether it survived pruning (and why not)."""

    rationale: str
    item_id: int | None
    title: str | None
    resolved_by: str | None
    logprob: float
    tokens: int
    weight: float
    kept: bool = True
    pruned_by: str | None = None


@dataclass
class RankedItem:
    """A candidate in the final ranking: vote score (0 for unchosen), votes, and direct-answer log-probability."""

    item_id: int
    title: str
    score: float
    votes: int
    logprob: float | None = None


@dataclass
class Reasoned:
    """The ranked candidates, the rationale supporting the top one, and every path's trace."""

    ranking: list[RankedItem]
    rationale: str
    paths: list[ReasoningPath]
    usage: dict[str, int]
    fallback: bool = False

    @property
    def top(self) -> RankedItem:
        """The recommended item."""
        return self.ranking[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def last_mentioned(text: str, titles: dict[int, str]) -> int | None:
    """The item whose (normalised) title occurs last in ``text``; ``None`` if none occurs.

    >>> last_mentioned("Heat is fine but Fargo fits best.", {1: "Fargo", 2: "Heat"})
    1
    """
    padded = f" {normalise_title(text)} "
    best, position = None, -1
    for item_id, title in titles.items():
        key = normalise_title(title)
        if key:
            found = padded.rfind(f" {key} ")
            if found > position:
                best, position = item_id, found
    return best


def prune_paths(paths: list[ReasoningPath], candidates: dict[int, str], rule: str, min_agreement: int) -> bool:
    """Mark inconsistent paths ``kept=False`` in place; returns True if everything was pruned (all kept instead)."""
    if rule in ("self", "both"):
        for path in paths:
            said = last_mentioned(path.rationale, candidates)
            if said is not None and said != path.item_id:
                path.kept, path.pruned_by = False, "self"
    if rule in ("majority", "both"):
        support: dict[int | None, int] = {}
        for path in paths:
            if path.kept:
                support[path.item_id] = support.get(path.item_id, 0) + 1
        if support and max(support.values()) >= min_agreement:
            for path in paths:
                if path.kept and support[path.item_id] < min_agreement:
                    path.kept, path.pruned_by = False, "majority"
    if not any(path.kept for path in paths):
        for path in paths:
            path.kept = True
        return True
    return False


def reasoning_prompt(task: ReasoningTask, config: ReasoningConfig) -> list[dict[str, str]]:
    """The chat that asks for a rationale about ``task``'s candidates: the ``explain`` task's prompt for the same
    history and candidates (and counts), so a run trained on those prompts is asked as it was trained."""
    if not task.candidates:
        raise LlmrecError("empty candidate list: reasoning needs at least one candidate")
    text = render(
        config.template,
        history=[task.catalog.title(i) for i in task.history],
        candidates=with_counts([task.catalog.title(i) for i in task.candidates], task.counts),
        marker=config.marker,
        counts=task.counts is not None,
    )
    return [{"role": "user", "content": text}]


def reason(engine: Engine, tasks: list[ReasoningTask], config: ReasoningConfig | None = None) -> list[Reasoned]:
    """Run reasoning generation for every task (all users' paths batched through the engine together)."""
    config = config or ReasoningConfig()
    prompts = [reasoning_prompt(task, config) for task in tasks]
    sampling = SamplingConfig(
        n=config.paths,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_reasoning_tokens,
        seed=config.seed,
        stop=[config.marker],
    )
    first = engine.generate([Request(messages=m, lora=t.lora) for m, t in zip(prompts, tasks, strict=True)], sampling)
    answers_asked = []
    for messages, task, result in zip(prompts, tasks, first, strict=True):
        grounding = Grounding(task.catalog, candidates=task.candidates, history=task.history)
        for completion in result.completions:
            answers_asked.append(
                Request(
                    messages=answer_turn(messages, completion.text, config.marker), grounding=grounding, lora=task.lora
                )
            )
    answers = engine.generate(answers_asked, SamplingConfig(max_new_tokens=8, seed=config.seed))
    direct = None
    if config.rank_rest:
        titles = [[task.catalog.title(i) for i in task.candidates] for task in tasks]
        try:
            direct = engine.score(
                [Request(messages=m, lora=t.lora) for m, t in zip(prompts, tasks, strict=True)], titles
            )
        except ScoringUnavailable:  # unchosen candidates keep their given order
            direct = None
    out = []
    for index, (task, result) in enumerate(zip(tasks, first, strict=True)):
        mine = answers[index * config.paths : (index + 1) * config.paths]
        paths = []
        for rationale, answer in zip(result.completions, mine, strict=True):
            chosen = answer.completions[0]
            tokens = len(rationale.token_ids) + len(chosen.token_ids)
            logprob = rationale.logprob + chosen.logprob
            paths.append(
                ReasoningPath(
                    rationale=rationale.text.strip(),
                    item_id=chosen.item_id,
                    title=chosen.title,
                    resolved_by=chosen.resolved_by,
                    logprob=logprob,
                    tokens=tokens,
                    weight=math.exp(logprob / max(tokens, 1)),
                )
            )
        usage = {
            "prompt_tokens": result.prompt_tokens + sum(a.prompt_tokens for a in mine),
            "completion_tokens": result.completion_tokens + sum(a.completion_tokens for a in mine),
        }
        scores = None if direct is None else direct[index]
        out.append(_rank(task, paths, scores, usage, config.prune, config.min_agreement))
    return out


def reprune(task: ReasoningTask, reasoned: Reasoned, rule: str, min_agreement: int = 2) -> Reasoned:
    """``reasoned`` (what :func:`reason` returned for ``task``) ranked again under another pruning ``rule``, from
    the same sampled paths: what ``reason`` returns with that rule for the same sample, without generating again
    (so rows that differ only in pruning share one sample and compare paired)."""
    _check_rule(rule)
    paths = [replace(path, kept=True, pruned_by=None) for path in reasoned.paths]
    logprob = {item.item_id: item.logprob for item in reasoned.ranking}
    direct = None if any(v is None for v in logprob.values()) else [logprob[i] for i in task.candidates]
    return _rank(task, paths, direct, reasoned.usage, rule, min_agreement)


def _check_rule(rule: str) -> None:
    if rule not in PRUNE_RULES:
        raise LlmrecError(f"prune must be one of {', '.join(PRUNE_RULES)}, got {rule!r}")


def _rank(
    task: ReasoningTask,
    paths: list[ReasoningPath],
    direct: list[float] | None,
    usage: dict[str, int],
    rule: str,
    min_agreement: int,
) -> Reasoned:
    """Prune ``paths`` in place under ``rule``, then rank the candidates by the kept paths' weighted votes (the
    unchosen by ``direct`` log-probability, else in their given order)."""
    fallback = prune_paths(paths, {i: task.catalog.title(i) for i in task.candidates}, rule, min_agreement)
    scores: dict[int, float] = {}
    votes: dict[int, int] = {}
    for path in paths:
        if path.kept and path.item_id is not None:
            scores[path.item_id] = scores.get(path.item_id, 0.0) + path.weight
            votes[path.item_id] = votes.get(path.item_id, 0) + 1
    logprob = dict(zip(task.candidates, direct, strict=True)) if direct is not None else {}
    order = {item: position for position, item in enumerate(task.candidates)}

    def key(item: int) -> tuple[float, float, int]:
        return (-scores.get(item, 0.0), -logprob.get(item, 0.0), order[item])

    ranked = sorted(dict.fromkeys(task.candidates), key=key)
    ranking = [
        RankedItem(item, task.catalog.title(item), scores.get(item, 0.0), votes.get(item, 0), logprob.get(item))
        for item in ranked
    ]
    supporting = [p for p in paths if p.kept and p.item_id == ranking[0].item_id]
    rationale = max(supporting, key=lambda p: p.weight).rationale if supporting else ""
    return Reasoned(ranking=ranking, rationale=rationale, paths=paths, usage=usage, fallback=fallback)
