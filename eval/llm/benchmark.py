"""LLM-recommender benchmark on ML-100K: every row scored on the very same c20 candidates, in one run.

    .venv/bin/python eval/llm/benchmark.py                          # writes eval/llm/RESULTS.md
    .venv/bin/python eval/llm/benchmark.py --steps 60 --users 200   # a reduced budget, labelled as such
    .venv/bin/python eval/llm/benchmark.py --sasrec runs/sasrec     # reuse a trained SASRec run
    .venv/bin/python eval/llm/benchmark.py --skip zero-shot,text      # leave rows out (named in the RESULTS command)
    .venv/bin/python eval/llm/benchmark.py --splits valid --seeds 1 --skip gru4rec,zero-shot,text,id-vector,hybrid
                                                                    # choose a lever: validation only, printed

Rows: random scores, popularity, the encoders (SASRec, GRU4Rec: trained here with their default configs, or
given), the base LLM zero-shot (text prompts), and LoRA fine-tunings of the shipped recipe
``adapters/smollm2-sasrec-mlp.yaml`` (``<item-emb>`` plus SASRec's user state as ``<user-emb>``, correcting
SASRec's own scores) and of it with one named change (``LLM_ROWS``): titles only, ``<item-emb>`` alone with SASRec
ids, ``<item-emb>`` alone with SASRec + MiniLM vectors. The rows the recipe's levers were chosen with (``VALID_ONLY``:
the former, distilled recipe, each lever taken back, and levers tried since, such as ``holdout4`` on a SASRec
trained with ``--holdout 4``) are scored with ``--splits valid`` alone, at every seed; the full run shows their
kept validation rows.
(Titled prompts, ``Title <item-emb>``, are about four times longer: on 2 cores a titled row trains for over an
hour, which is why only the titles-only row has them.)
Each fine-tuning runs as its own ``llmrec sft`` process on the recipe written to ``WORK/recipe-NAME.yaml`` (its
wall time and peak memory are its own). Every row ranks the c20 candidates of the same users of the valid and
the test split (the first ``--users`` of each, or all): HR@1, NDCG@5, NDCG@10, and how each row answers. SASRec
and the recipe run ``--seeds`` seeds (seed i of the recipe is trained from seed i of SASRec), and the recipe is
compared with its teacher by paired bootstrap intervals over users, overall and by the target's popularity and the
length of the user's history. Nothing is chosen here: each row says what was chosen on which split before.

Each row's per-user ranks and figures are kept in the repository (``--evidence``, ``eval/llm/kept/``): a run of
several hours goes on in a later session, on another machine, where ``--work`` (the trained runs) is gone, and
only what is missing or stale is trained and scored.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RECIPE = ROOT / "llmrec" / "recipes" / "smollm2-sasrec-mlp.yaml"
BUDGET_FILE = "benchmark-budget.json"  # in each LLM run: the recipe text, --steps and encoder it was trained from
# The LLM rows: the shipped recipe with these changes, nothing else (name: label, recipe changes). The recipe adds
# SASRec's own scores to the LLM's (task.prior), which needs SASRec's user state in the prompt: a row without it
# drops the prior too.
FORMER = {"r": 16, "lora_alpha": 32}  # the recipe's adapter before the prior levers were chosen on validation
LLM_ROWS = {
    "recipe": (
        "LLM + LoRA + SASRec ID projector, `<item-emb>` + `<user-emb>`, correcting SASRec's scores (the recipe)",
        {},
    ),
    # Titles carry no vectors to score the candidates with: this row answers with the candidate's letter.
    "text": (
        "LLM + LoRA, titles only (letter verbalizer)",
        {
            "representation": "none",
            "task": {"user_vector": False, "output": "verbalizer", "prior": 0.0},
            "trainer": {"item_loss": "candidates"},  # the answer tokens' LM loss (item_loss is for item scores)
        },
    ),
    "id-vector": (
        "LLM + LoRA + SASRec ID projector, `<item-emb>` only",
        {"task": {"user_vector": False, "prior": 0.0}},
    ),
    # The recipe's vector prompts with SASRec + MiniLM item vectors (the user state is SASRec's alone: id only).
    "hybrid": (
        "LLM + LoRA + hybrid (SASRec + MiniLM) projector, `<item-emb>` only",
        {"representation": "hybrid", "task": {"user_vector": False, "prior": 0.0}},
    ),
    # The recipe as it was before the levers below: it learns the whole ranking, pulled towards SASRec's catalog
    # distribution, with the narrower adapter on each user's last eight training positions.
    "distilled": (
        "the former recipe: distilled from SASRec (distill 1.0) instead of correcting it, LoRA r 16, last eight "
        "training positions per user",
        {"task": {"prior": 0.0, "examples_per_user": 8}, "trainer": {"distill": 1.0}, "lora": FORMER},
    ),
    # The levers, each taken back alone (measured on validation only, where they were chosen).
    "r16": ("the recipe with LoRA r 16 (alpha 32)", {"lora": FORMER}),
    "last8": ("the recipe trained on each user's last eight positions", {"task": {"examples_per_user": 8}}),
    "r16-last8": (
        "the recipe with LoRA r 16 on each user's last eight positions",
        {"task": {"examples_per_user": 8}, "lora": FORMER},
    ),
    "holdout4": (
        "the recipe stacked on a SASRec trained without each user's last four training items, learning from those "
        "four",
        {"task": {"examples_per_user": 4}},
    ),
}
# Rows whose teacher is a SASRec trained without each user's last N training items (`llmrec encoder train
# --holdout N`): they learn their correction on positions that teacher has not fitted, as it has not fitted the
# validation and test targets. Their teacher is its own encoder row (`teacher_of`).
HOLDOUT = {"holdout4": 4}
# Rows measured on validation alone, to choose the recipe: `--skip`ped by the full run, shown from their kept
# validation rows.
VALID_ONLY = ("distilled", "r16", "last8", "r16-last8", "holdout4")


SPLITS = ("valid", "test")
METRICS = ("hr@1", "ndcg@5", "ndcg@10")
SEED_BASE = {"encoder": 42, "sft": 0}  # each side's default seed (TrainConfig's, the recipe trainer's); then +1, +2
# What was chosen while looking at which split, per row (issue: choices on validation only).
TUNING = {
    "random": "nothing to tune",
    "pop": "nothing to tune",
    "sasrec": "the library's defaults (early stopping on valid NDCG@10); nothing chosen here",
    "gru4rec": "the library's defaults (early stopping on valid NDCG@10); its defaults were changed while looking "
    "at test NDCG in an earlier version (see eval/encoders/RESULTS.md)",
    "zero-shot": "nothing to tune",
    "recipe": "its prior, LoRA r 64 and examples from every training position were chosen on validation (one seed, "
    "see the choices below); its earlier `item_loss: catalog` and step budget were adopted on test HR@1 before "
    "validation was used",
    "other": "the recipe with one change named by the row; nothing chosen here",
}


def seeded(name: str, index: int) -> str:
    """The work-directory name of seed ``index`` of ``name`` (seed 0 keeps the plain name: runs kept from before
    seeds were added are reused)."""
    return name if index == 0 else f"{name}-s{index}"


def metrics_of(ranks: np.ndarray) -> dict[str, float]:
    """HR@1, NDCG@5/10 from 0-based target ranks (the answer is the top-scored candidate: always a candidate)."""
    from llmrec.ranking.metrics import ranking_metrics

    return ranking_metrics(ranks, (1, 5, 10))


def ranks_of(scores: np.ndarray, examples: list) -> np.ndarray:
    """0-based rank of each example's target among its candidates (ties count against it)."""
    from llmrec.ranking.metrics import target_ranks

    return target_ranks(scores, np.array([e.target_index for e in examples]))


def groups_of(examples: list, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Which examples fall in each group: the target's popularity (head, torso, tail: items ordered by training
    interactions, most first, cut where the items before them hold a third and two thirds of all interactions)
    and short histories (the quarter of examples with the fewest earlier items).

    >>> from types import SimpleNamespace as E
    >>> counts = np.array([0, 50, 30, 10, 6, 4])  # item 0 is padding
    >>> found = groups_of([E(target=1, position=30), E(target=3, position=5), E(target=5, position=90)], counts)
    >>> [name for name, members in found.items() if members[1]]  # the second example: target 3, 5 earlier items
    ['tail target', 'short history']
    >>> found["head target"].tolist(), found["torso target"].tolist()
    ([True, False, False], [False, False, False])
    """
    order = np.argsort(-counts[1:], kind="stable") + 1  # items, most interacted first
    share = (np.cumsum(counts[order]) - counts[order]) / counts[1:].sum()  # of the interactions before each item
    bucket = np.empty(len(counts), dtype=object)
    bucket[order] = np.where(share <= 1 / 3, "head", np.where(share <= 2 / 3, "torso", "tail"))
    targets = np.array([bucket[e.target] for e in examples])
    earlier = np.array([e.position for e in examples])
    out = {f"{name} target": targets == name for name in ("head", "torso", "tail")}
    out["short history"] = earlier <= np.percentile(earlier, 25)
    return out


def encoder_scores(run: Path, split: Any, examples: list, which: str = "test") -> np.ndarray:
    """An encoder run's scores of each example's candidates after the user's history (as its c20 eval)."""
    import torch

    from llmrec.data.splits import EvalSet
    from llmrec.encoders.run import load_best
    from llmrec.ranking.protocols import history_matrix

    model = load_best(run).eval()
    evals = split.eval_set(which)
    first = EvalSet(evals.users[: len(examples)], evals.cutoffs[: len(examples)], evals.targets[: len(examples)])
    seqs = history_matrix(split, first, model.config.max_len)
    candidates = torch.tensor([e.candidates for e in examples])
    with torch.inference_mode():
        return model.score(torch.from_numpy(seqs), candidates).float().numpy()


def teacher_of(name: str) -> str:
    """The encoder row LLM row ``name`` is trained from: ``sasrec``, or ``sasrec-holdoutN`` for a ``HOLDOUT`` row.

    >>> teacher_of("recipe"), teacher_of("holdout4")
    ('sasrec', 'sasrec-holdout4')
    """
    return f"sasrec-holdout{HOLDOUT[name]}" if name in HOLDOUT else "sasrec"


def train_encoder_run(name: str, work: Path, index: int = 0) -> tuple[Path, float]:
    """Train encoder row ``name`` (a model, or ``MODEL-holdoutN``: trained with ``--holdout N``) with its default
    config at seed ``index`` (skipped when already trained); wall seconds."""
    run = work / seeded(name, index)
    if finished(run):
        return run, json.loads((run / "metrics.json").read_text()).get("wall_seconds", 0.0)
    started = time.perf_counter()
    model, _, holdout = name.partition("-holdout")
    command = [sys.executable, "-m", "llmrec", "encoder", "train", "--dataset", "ml-100k", "--model", model]
    command += ["--seed", str(SEED_BASE["encoder"] + index)] + (["--holdout", holdout] if holdout else [])
    resume = ["--resume"] if (run / "config.yaml").exists() else []
    subprocess.run([*command, "--out", str(run), *resume], check=True)
    return run, time.perf_counter() - started


def row_recipe(name: str, sasrec: Path, work: Path, index: int = 0) -> Path:
    """The shipped recipe with row ``name``'s changes, SASRec run ``sasrec`` and seed ``index``, as
    ``work/recipe-NAME.yaml``."""
    import yaml

    from llmrec.training.recipe import load_recipe, recipe_from_dict

    values = load_recipe(RECIPE).to_dict()
    for key, change in LLM_ROWS[name][1].items():
        values[key] = {**values[key], **change} if isinstance(change, dict) else change
    values["encoder"] = str(sasrec) if uses_teacher(name) else None
    if index:  # seed 0 is the recipe's own: its recipe text, and so its kept run, stays as it was
        values["trainer"] = {**values["trainer"], "seed": SEED_BASE["sft"] + index}
    recipe_from_dict(values)  # a bad combination fails here, before any training
    path = work / f"recipe-{seeded(name, index)}.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def uses_teacher(name: str) -> bool:
    """Whether LLM row ``name`` is trained from SASRec (its item vectors, user states or scores): every row but
    the titles-only one."""
    from llmrec.training.recipe import load_recipe

    return LLM_ROWS[name][1].get("representation", load_recipe(RECIPE).representation) != "none"


def encoder_digest(run: Path) -> str:
    """SHA-256 of an encoder run's best weights: which SASRec a fine-tuning was trained on, even if a run was
    retrained at the same path."""
    from llmrec.runs import best_checkpoint

    return hashlib.sha256((best_checkpoint(run) / "model.safetensors").read_bytes()).hexdigest()


def budget_of(recipe_text: str, steps: int, encoder: str = "", valid_users: int = 0) -> str:
    """What a fine-tuning was trained from, comparable across llmrec versions: the recipe as the current code
    reads it (a field added since, at its default, changes nothing), the ``--steps`` and ``--users`` overrides
    (``valid_users``: the users its checkpoints were chosen on) and the encoder's weights (``encoder_digest``;
    empty for a run kept before the digest was recorded, which never matches)."""
    import yaml

    from llmrec.errors import LlmrecError
    from llmrec.training.recipe import recipe_from_dict

    try:
        values = recipe_from_dict(yaml.safe_load(recipe_text)).to_dict()
    except LlmrecError as error:  # a recipe of an older llmrec: never the same budget
        return f"unreadable recipe: {error}"
    values.pop("encoder", None)  # where the teacher is (another machine, another --work) is not what it is
    if steps:
        values["trainer"]["max_steps"] = steps
    if valid_users:
        values["trainer"]["valid_users"] = valid_users
    values["encoder_weights"] = encoder
    return json.dumps(values, sort_keys=True)


def same_budget(kept: str, wanted: str) -> bool:
    """Whether a kept budget (``budget_of`` when it was kept) is ``wanted``, read by the current code: a recipe
    field added since the row was kept, at its default, changes nothing."""
    import yaml

    if kept == wanted:
        return True
    try:
        values = json.loads(kept)
        encoder = values.pop("encoder_weights")
    except (ValueError, KeyError, AttributeError):
        return False
    return budget_of(yaml.safe_dump(values), 0, encoder) == wanted


def train_llm_run(
    name: str, sasrec: Path, work: Path, steps: int, index: int = 0, digest: str = "", valid_users: int = 0
) -> tuple[dict[str, Any], str]:
    """One ``llmrec sft`` process for row ``name``'s recipe at seed ``index`` (``digest``: its teacher's weights,
    ``teacher_weights``; ``valid_users``: when not 0, its checkpoints are chosen on that many validation users
    rather than the recipe's); its metrics.json and its budget (``budget_of``).

    A run of the same recipe and budget left in ``work`` by an earlier invocation is reused when finished and
    resumed when interrupted; a run of another recipe, budget or encoder (``BUDGET_FILE`` differs) is deleted and
    retrained.
    """
    run = work / f"sft-{seeded(name, index)}"
    recipe = row_recipe(name, sasrec, work, index)
    wanted = budget_of(recipe.read_text(), steps, digest, valid_users)
    budget = run / BUDGET_FILE
    if run.exists() and (not budget.exists() or budget_of(**json.loads(budget.read_text())) != wanted):
        print(f"{run}: trained from another recipe, budget or encoder; retraining", file=sys.stderr)
        shutil.rmtree(run)
    if not (run / "metrics.json").exists() or not json.loads((run / "metrics.json").read_text()).get("finished"):
        command = [sys.executable, "-m", "llmrec", "sft", "--recipe", str(recipe), "--out", str(run)]
        command += ["--no-eval", "--json"]
        if steps:
            command += ["--max-steps", str(steps)]
        if valid_users:
            command += ["--trainer", f"valid_users={valid_users}"]
        if (run / "config.yaml").exists():
            command.append("--resume")
        run.mkdir(parents=True, exist_ok=True)
        kept = {"recipe_text": recipe.read_text(), "steps": steps, "encoder": digest, "valid_users": valid_users}
        budget.write_text(json.dumps(kept) + "\n")
        subprocess.run(command, check=True)
    return json.loads((run / "metrics.json").read_text()), wanted


class Kept:
    """The rows' evidence, kept in the repository (``EVIDENCE/NAME.json``, NAME a row's seeded name): what was
    scored (``what``: the recipe and budget of a fine-tuning, an encoder's weights, the zero-shot model and task),
    on how many users, and the row (each split's per-user ranks, its training figures). Small text files: a
    benchmark of several hours continues from them in a later session, on another machine, where ``--work`` (the
    trained runs) is gone; an entry of anything else than what is asked for now is scored again."""

    def __init__(self, root: Path, users: int, fallback: Path | None = None) -> None:
        self.root, self.users, self.fallback = root, users, fallback

    def _file(self, name: str) -> Path:
        return self.root / f"{name}.json"

    def entry(self, name: str) -> dict[str, Any] | None:
        """What is kept for ``name`` on this benchmark's users, whatever it scored."""
        path = self._file(name)
        found = json.loads(path.read_text()) if path.exists() else None
        if (found is None or found["users"] != self.users) and self.fallback is not None:
            # a validation-only run reads a full run's training of the same row; its test stays unscored here
            found = Kept(self.fallback, self.users).entry(name)
            if found is not None:
                found["row"].pop("test_ranks", None)
        return found if found is not None and found["users"] == self.users else None

    def row(self, name: str, what: str) -> dict[str, Any] | None:
        """The kept row of ``name`` if it scored ``what``."""
        found = self.entry(name)
        return found["row"] if found is not None and found["what"] == what else None

    def keep(self, name: str, what: str, row: dict[str, Any]) -> dict[str, Any]:
        from llmrec.runs import atomic_write_text

        self.root.mkdir(parents=True, exist_ok=True)
        entry = {"what": what, "users": self.users, "measured": f"{datetime.now(UTC):%Y-%m-%d}", "row": row}
        atomic_write_text(self._file(name), json.dumps(entry) + "\n")  # a write cut short leaves the last whole one
        return row


def finished(run: Path) -> bool:
    """Whether an encoder run trained to its end (its best weights are there to score or to distil)."""
    return (run / "metrics.json").exists()


def encoder_row(
    name: str, run: Path, work: Path, index: int, kept: Kept, score: Any, given: bool = False
) -> dict[str, Any]:
    """Seed ``index`` of encoder ``name`` (trained at ``run`` unless ``given``): its ranks and training wall
    seconds, kept under the digest of the weights they were scored with. A kept row stands while ``run`` is gone;
    when ``run`` is there, its weights must be the kept ones."""
    seeded_name = seeded(name, index)
    if not finished(run):
        found = kept.entry(seeded_name)
        if found is not None:
            return found["row"]
        if given:
            raise SystemExit(f"{run}: not a finished {name} run, and no row of it is kept")
        run, wall = train_encoder_run(name, work, index)
    else:
        wall = json.loads((run / "metrics.json").read_text()).get("wall_seconds", 0.0)
    digest = encoder_digest(run)
    found = kept.row(seeded_name, digest)
    if found is not None:
        return found
    return kept.keep(seeded_name, digest, {**score(run), "wall_seconds": wall, "digest": digest})


def teacher_weights(name: str, teacher: Path, index: int, kept: Kept) -> str | None:
    """The digest of the SASRec weights LLM row ``name`` (seed ``index``) is trained from: those of ``teacher``, or
    of the teacher's kept row while ``teacher`` is gone (None: neither); empty for a row without a teacher."""
    if not uses_teacher(name):
        return ""
    if finished(teacher):
        return encoder_digest(teacher)
    found = kept.entry(seeded(teacher_of(name), index))
    return None if found is None else found["row"]["digest"]


def llm_row(name: str, index: int, teacher: Path, args: argparse.Namespace, kept: Kept) -> dict[str, Any] | None:
    """The kept row of seed ``index`` of LLM row ``name`` if it was trained from what it would be trained from now
    (``budget_of`` its recipe, ``--steps`` and its teacher's weights); None when it is to be trained."""
    digest = teacher_weights(name, teacher, index, kept)
    if digest is None:
        return None
    recipe = row_recipe(name, teacher, args.work, index)
    found = kept.entry(seeded(name, index))
    wanted = budget_of(recipe.read_text(), args.steps, digest, args.users)
    return found["row"] if found is not None and same_budget(found["what"], wanted) else None


def llm_ranks(recommender: Any, examples: dict[str, list], name: str) -> dict[str, Any]:
    """The LLM ``recommender``'s target ranks on the c20 ``examples`` of each split, and its s/user on test (on
    validation when only validation is scored)."""
    row: dict[str, Any] = {}
    try:
        for which, wanted in examples.items():
            started = time.perf_counter()
            scored, scores = recommender.rank_split(which, limit=len(wanted))
            if [e.target for e in scored] != [e.target for e in wanted]:
                raise SystemExit(f"{name}: its {which} examples are not the benchmark's")
            row[f"{which}_ranks"] = ranks_of(scores, scored).tolist()
            if which == "test" or "test" not in examples:  # validation alone: its speed
                row["seconds_per_user"] = (time.perf_counter() - started) / max(1, len(scored))
    finally:
        recommender.close()
    return row


def summarise(model: str, tuning: str, seeds: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """One table row from each seed's ranks (``valid_ranks``, and ``test_ranks`` unless only validation was
    scored): the test metrics (mean over seeds, with their standard deviation), the valid ones under ``valid``, and
    the ranks kept for the paired sections."""
    from llmrec.eval.llm import SCORED

    row: dict[str, Any] = {"model": model, "seeds": len(seeds), "answers": SCORED, "tuned": tuning}
    splits = [which for which in SPLITS if f"{which}_ranks" in seeds[0]]
    for which in splits:
        per_seed = [metrics_of(np.array(seed[f"{which}_ranks"])) for seed in seeds]
        means = {m: float(np.mean([s[m] for s in per_seed])) for m in METRICS}
        if len(seeds) > 1:
            means |= {f"{m}_sd": float(np.std([s[m] for s in per_seed], ddof=1)) for m in METRICS}
        if which == "test":
            row |= means
        else:
            row[which] = means
    row["ranks"] = {which: [seed[f"{which}_ranks"] for seed in seeds] for which in splits}
    return row | extra


def median_of(seeds: list[dict[str, Any]], key: str) -> float | None:
    """The median of figure ``key`` over the seeds that have it (None: none has): one seed trained beside other
    work does not stand for the row.

    >>> median_of([{"s": 10.0}, {"s": 90.0}, {"s": 12.0}, {}], "s")
    12.0
    """
    values = [seed[key] for seed in seeds if seed.get(key)]
    return float(np.median(values)) if values else None


def cell(row: dict[str, Any], metric: str) -> str:
    """A metric, with its standard deviation over seeds when there are several."""
    sd = row.get(f"{metric}_sd")
    return f"{row[metric]:.4f}" + (f" ± {sd:.4f}" if sd is not None else "")


def teacher_section(
    rows: list[dict[str, Any]],
    groups: dict[str, dict[str, np.ndarray]],
    key: str = "recipe",
    against: str = "sasrec",
) -> list[str]:
    """LLM row ``key`` (the recipe) against row ``against`` (its SASRec teacher), paired over users (each user's
    metric averaged over seeds), overall and per group, on each scored split (those of ``groups``)."""
    from llmrec.ranking.intervals import paired_bootstrap, per_user

    recipe = next((r for r in rows if r.get("key") == key), None)
    teacher = next((r for r in rows if r.get("key") == against), None)
    if recipe is None or teacher is None:
        return []
    title = "The recipe" if key == "recipe" else f"`{key}` ({recipe['model']})"
    other = "SASRec" if against == "sasrec" else f"`{against}`"
    heading = "its SASRec teacher" if against == teacher_of(key) == "sasrec" else other
    lines = [
        f"## {title} against {heading}",
        "",
        f"Seed i of the LLM row is paired with seed i of {other} ({recipe['seeds']} and {teacher['seeds']} seeds); "
        f"each user's metric is averaged over each side's seeds, and the difference (LLM minus {other}) has a "
        "95% bootstrap interval over users (10,000 resamples). The LLM beats its teacher only where the whole "
        "interval is above zero. Groups: the target's popularity (head, torso, tail: items ordered by training "
        "interactions, cut where the items before them hold a third and two thirds of them) and the quarter of "
        "users with the shortest histories.",
        "",
        f"| split | users | LLM HR@1 | {other} HR@1 | HR@1 difference | NDCG@10 difference | beats |",
        "| --- | --- | ---: | ---: | --- | --- | --- |",
    ]
    for which in groups:
        for name, members in {"all": None, **groups[which]}.items():
            if members is not None and not members.any():
                continue  # no user of this split in the group (a reduced --users)
            pairs = {}
            for metric in ("hr@1", "ndcg@10"):
                sides = [
                    np.array([per_user(np.array(ranks), metric) for ranks in row["ranks"][which]])  # (seeds, users)
                    for row in (recipe, teacher)
                ]
                if members is not None:
                    sides = [side[:, members] for side in sides]
                pairs[metric] = paired_bootstrap(*sides)
            hr = pairs["hr@1"]
            lines.append(
                f"| {which} | {name} ({hr.users}) | {hr.mean_a:.4f} | {hr.mean_b:.4f} | {hr.describe()} | "
                f"{pairs['ndcg@10'].describe()} | {'yes' if hr.beats else 'no'} |"
            )
    return [*lines, ""]


def valid_choices(args: argparse.Namespace, teacher_run: Any, users: int) -> list[str]:
    """A section of how the recipe was chosen: each LLM row kept from a ``--splits valid`` run (``EVIDENCE/valid``,
    and the recipe's seeds of the full run) for its current definition and its teachers' weights (``teacher_run``:
    encoder row and seed to its run), against SASRec's same seeds, paired over the validation users. Empty when
    nothing is kept for this budget and these users."""
    from llmrec.ranking.intervals import paired_bootstrap, per_user

    kept = Kept(args.evidence / "valid", users, fallback=args.evidence)

    def seeds_of(name: str) -> list[dict[str, Any]]:  # the row's kept seeds 0, 1, ... while each is current
        found = []
        for index in range(args.seeds):
            row = llm_row(name, index, teacher_run(teacher_of(name), index), args, kept)
            if row is None:
                break
            found.append(row)
        return found

    def averaged(rows: list[dict[str, Any]], metric: str) -> np.ndarray:  # each user's metric over the seeds
        return np.mean([per_user(np.array(row["valid_ranks"]), metric) for row in rows], axis=0)

    def encoder_seeds(name: str, count: int) -> list[dict[str, Any]]:  # encoder row `name`'s kept seeds
        entries = (kept.entry(seeded(name, index)) for index in range(count))
        return [entry["row"] for entry in entries if entry is not None]

    lines = [
        "## Choices made on validation",
        "",
        f"The recipe's levers were chosen on the {users} validation users before test was scored: each LLM row "
        "below (`--splits valid`, kept in `eval/llm/kept/valid/`; the recipe's later seeds from the full run) "
        "against SASRec's same seeds, each user's metric averaged over the seeds, LLM minus SASRec with a 95% "
        "bootstrap interval over users. A row on its own teacher (`HOLDOUT`) also shows that teacher's HR@1.",
        "",
        "| row | seeds | valid HR@1 | its teacher's HR@1 | HR@1 difference from SASRec | NDCG@10 difference | train |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    found = 0
    for name in ("recipe", *VALID_ONLY):
        rows = seeds_of(name)
        base = encoder_seeds("sasrec", len(rows))
        if not rows or len(base) < len(rows):
            continue
        found += name != "recipe"  # the section is for the levers; the recipe is their reference
        teacher = encoder_seeds(teacher_of(name), len(rows))
        label = LLM_ROWS[name][0]
        # the one-seed levers were measured against the recipe's first seed: it is shown alone too
        variants = [(label, len(rows))] + ([(f"{label}, its first seed alone", 1)] if len(rows) > 1 else [])
        for shown, count in variants:
            llm, sas = rows[:count], base[:count]
            hr, ndcg = (paired_bootstrap(averaged(llm, m), averaged(sas, m)) for m in ("hr@1", "ndcg@10"))
            own = f"{averaged(teacher[:count], 'hr@1').mean():.4f}" if len(teacher) >= count else "-"
            train = median_of(rows[:count], "train_seconds")
            lines.append(
                f"| {shown} | {count} | {hr.mean_a:.4f} | {own} | {hr.describe()} | {ndcg.describe()} | "
                f"{f'{train / 60:.1f} min' if train else '-'} |"
            )
    return [*lines, ""] if found else []


def write_results(
    out: Path,
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    wall: float,
    users: int,
    groups: dict[str, dict[str, np.ndarray]],
    choices: list[str],
) -> None:
    """RESULTS.md: the table, the recipe against its teacher, the choices made on validation (``valid_choices``)
    and how it was measured."""
    budget = f"{args.steps} optimiser steps each (a reduced budget)" if args.steps else "the recipe's budget"
    lines = [
        "# LLM-recommender benchmark: ML-100K, c20 (LLaRA's 20-candidate protocol)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} CPU cores ({platform.machine()}) by "
        f"`{' '.join(['python', 'eval/llm/benchmark.py', *args.argv])}` ({wall / 60:.0f} min; fine-tunings and "
        "scores kept from earlier invocations are reused, each row's train time is its own run's).",
        "",
        f"Every row ranks the same candidates of the same {users} users of each split (the c20 protocol's target + "
        "19 unseen items, saved with the split). LLM rows: the bundled SmolLM2-135M-Instruct, the shipped recipe "
        f"`adapters/smollm2-sasrec-mlp.yaml` (rank task, 10 history items) trained for {budget}; "
        "the other rows change it as their names say (`LLM_ROWS` in the script). Scores: each candidate's "
        "projected vector dotted with the LLM's last hidden state (the recipe's `output: item`), plus SASRec's own "
        "score of it in the rows with the recipe's `prior`; for the titles-only row and "
        "the zero-shot LLM, each label's log-probability as the complete answer; "
        "ties count against the target. answer = how the row's served answer is chosen (every row here serves its "
        "best-scored candidate, so its answer is a candidate by construction: no valid ratio is claimed). "
        f"SASRec and the recipe run {args.seeds} seed(s) each (test figures: mean ± standard deviation over "
        "seeds); the other rows one. Test metrics in the first columns; valid ones, where choices are made, after "
        "them. Train = wall time of the training process (with the torch threads it ran on), the median over "
        "seeds; peak = the highest peak resident memory of its seeds; s/user likewise a median. Each row's "
        "per-user ranks and figures are kept in `eval/llm/kept/` and reused by later invocations while what they "
        "scored is unchanged (the same recipe, budget and teacher weights; see `Kept` in the script), so a row may "
        "come from an earlier invocation.",
        "",
        "| model | seeds | HR@1 | NDCG@5 | NDCG@10 | valid HR@1 | valid NDCG@10 | answer | train | peak MiB | "
        "s/user (eval) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        train = f"{row['train_seconds'] / 60:.1f} min" if row.get("train_seconds") else "-"
        if row.get("threads"):
            train += f" ({row['threads']} thread{'s' if row['threads'] > 1 else ''})"
        peak = f"{row['peak_rss_mib']:.0f}" if row.get("peak_rss_mib") else "-"
        speed = f"{row['seconds_per_user']:.2f}" if row.get("seconds_per_user") else "-"
        valid = row["valid"]
        lines.append(
            f"| {row['model']} | {row['seeds']} | {cell(row, 'hr@1')} | {cell(row, 'ndcg@5')} | "
            f"{cell(row, 'ndcg@10')} | {valid['hr@1']:.4f} | {valid['ndcg@10']:.4f} | {row['answers']} | {train} | "
            f"{peak} | {speed} |"
        )
    lines += ["", "What was chosen while looking at which split, per row:", ""]
    lines += [f"- {row['model']}: {row['tuned']}." for row in rows]
    lines += ["", *teacher_section(rows, groups), *choices]
    lines += [
        "## Published, other setups",
        "",
        "Figures from papers, for orientation only: their models, splits and candidate draws differ from the rows "
        "above, so none of them is a row of this table.",
        "",
        "| system | HR@1 | setup |",
        "| --- | ---: | --- |",
        "| LLaRA (Liao et al., SIGIR 2024) | 0.4526 | LLaMA-2 7B on 2xA100; MovieLens-100K under LLaRA's own "
        "preprocessing, split and 20 candidates per user |",
        "",
    ]
    out.write_text("\n".join(lines))
    kept = [{k: v for k, v in row.items() if k not in ("ranks", "key")} for row in rows]
    (out.parent / "results.json").write_text(json.dumps(kept, indent=2) + "\n")


def valid_report(rows: list[dict[str, Any]], groups: dict[str, dict[str, np.ndarray]], users: int) -> str:
    """What ``--splits valid`` prints: every row's validation metrics, and each LLM row trained from SASRec against
    it (the figures levers are chosen on; test stays unscored)."""
    lines = [
        f"Validation only ({users} users): choices are made here; test is scored once, for the frozen configuration.",
        "",
        "| model | seeds | valid HR@1 | valid NDCG@5 | valid NDCG@10 | train |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        train = f"{row['train_seconds'] / 60:.1f} min" if row.get("train_seconds") else "-"
        valid = row["valid"]
        lines.append(
            f"| {row['model']} | {row['seeds']} | {valid['hr@1']:.4f} | {valid['ndcg@5']:.4f} | "
            f"{valid['ndcg@10']:.4f} | {train} |"
        )
    lines.append("")
    for name in LLM_ROWS:
        if uses_teacher(name):
            lines += teacher_section(rows, groups, name)
        if name in HOLDOUT:  # against its own, weaker teacher too, and against the recipe it would replace
            lines += teacher_section(rows, groups, name, teacher_of(name))
            lines += teacher_section(rows, groups, name, "recipe")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """The command line (``argv``: its arguments, default ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=0, help="Optimiser steps per fine-tuning (0: the recipe's).")
    parser.add_argument(
        "--users",
        type=int,
        default=0,
        help="Evaluate the first N users of each split (0: all); a fine-tuning's checkpoints are then also chosen on "
        "the first N validation users, not the recipe's.",
    )
    parser.add_argument("--seeds", type=int, default=3, help="Seeds of SASRec and the recipe (pairs).")
    parser.add_argument("--sasrec", type=Path, help="A trained SASRec run to use as its first seed (default: train).")
    parser.add_argument("--gru4rec", type=Path, help="A trained GRU4Rec run to use (default: train one).")
    parser.add_argument(
        "--skip", default="", help=f"Comma-separated rows to leave out: gru4rec, zero-shot, {', '.join(LLM_ROWS)}."
    )
    parser.add_argument(
        "--work", type=Path, help="Where the trained runs are kept (default: $LLMREC_HOME/bench-llm, see the README)."
    )
    parser.add_argument(
        "--splits", default="valid,test", choices=["valid,test", "valid"],
        help="valid: score validation users only and print the rows, for choices made while developing a lever "
        "(RESULTS.md untouched; kept under EVIDENCE/valid); test is scored once the configuration is frozen.",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument(
        "--evidence", type=Path, default=HERE / "kept", help="Where each row's ranks and figures are kept (see Kept)."
    )
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv  # as RESULTS.md names the command
    skip = set(filter(None, args.skip.split(",")))
    if args.work is None:
        from llmrec.paths import llmrec_home

        args.work = llmrec_home() / "bench-llm"
    unknown = skip - {"gru4rec", "zero-shot", *LLM_ROWS}
    if unknown:
        parser.error(f"--skip: unknown rows {', '.join(sorted(unknown))}")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")

    from llmrec.adapters.tasks import build_examples
    from llmrec.data.builtin import load_dataset
    from llmrec.data.splits import leave_one_out_split
    from llmrec.inference.recommender import LLMRecommender
    from llmrec.training.recipe import load_recipe

    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset("ml-100k")
    split = leave_one_out_split(dataset)
    # the candidates every row ranks, and the zero-shot row's task: titles, answered by the candidate's letter
    task = load_recipe(RECIPE).task.titles_only(output="verbalizer")
    splits = args.splits.split(",")
    examples = {which: build_examples(dataset, split, which, task) for which in splits}
    if args.users:
        examples = {which: found[: args.users] for which, found in examples.items()}
    counts = np.bincount(np.concatenate(split.train_sequences()), minlength=dataset.num_items + 1)
    groups = {which: groups_of(found, counts) for which, found in examples.items()}
    rows: list[dict[str, Any]] = []
    users = len(examples["valid"])
    # validation-only rows are kept apart: a full run scores both splits of the same training again
    full = args.splits == "valid,test"
    kept = Kept(args.evidence, users) if full else Kept(args.evidence / "valid", users, fallback=args.evidence)

    def teacher_run(name: str, index: int) -> Path:  # the run of encoder row `name`'s seed `index`
        return args.sasrec if name == "sasrec" and args.sasrec and index == 0 else args.work / seeded(name, index)

    choices = valid_choices(args, teacher_run, users) if "test" in splits else []
    if "test" in splits:  # rows for choosing the recipe are scored on validation alone
        skip |= set(VALID_ONLY)
    seeded_rows = {"recipe", *VALID_ONLY}  # rows run at every --seeds seed (VALID_ONLY: in valid runs alone)

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "ranks"}), file=sys.stderr)
        if "test" in splits:
            write_results(args.out, rows, args, time.perf_counter() - started, users, groups, choices)

    def scored(scores_of: Any) -> dict[str, list[int]]:
        return {f"{w}_ranks": ranks_of(scores_of(w, found), found).tolist() for w, found in examples.items()}

    rng = np.random.default_rng(0)
    add(summarise("random", TUNING["random"], [scored(lambda w, found: rng.random((len(found), 20)))]))
    popularity = [scored(lambda w, found: np.array([[counts[c] for c in e.candidates] for e in found], dtype=float))]
    add(summarise("pop", TUNING["pop"], popularity))
    # An LLM row still to train needs its teacher's weights: a teacher known only by its kept row is trained again
    # first, so that the SASRec row below is scored with the weights the new fine-tuning distils (no row mixes two
    # trainings of one seed).
    # Validation-only rows (levers) run every seed: a lever is adopted on three seeds, not on one lucky one.
    llm_seeds = [(n, i) for n in LLM_ROWS if n not in skip for i in range(args.seeds if n in seeded_rows else 1)]
    for name, index in llm_seeds:
        teacher = teacher_run(teacher_of(name), index)
        if not uses_teacher(name) or finished(teacher) or llm_row(name, index, teacher, args, kept) is not None:
            continue
        if teacher == args.sasrec:
            raise SystemExit(f"--sasrec {teacher}: not a finished run, and {name} needs it")
        print(f"{teacher.name}: needed to train {name}; training it", file=sys.stderr)
        train_encoder_run(teacher_of(name), args.work, index)
    holdouts = {teacher_of(n): None for n in HOLDOUT if n not in skip}
    encoders = {"sasrec": args.sasrec, "gru4rec": None if "gru4rec" in skip else args.gru4rec, **holdouts}
    for name, given in encoders.items():
        if name in skip:
            continue
        seeds = []
        for index in range(args.seeds if name.startswith("sasrec") else 1):
            run = given if given and index == 0 else args.work / seeded(name, index)
            score = lambda run: scored(lambda w, found: encoder_scores(run, split, found, w))  # noqa: E731
            seeds.append(encoder_row(name, run, args.work, index, kept, score, given=bool(given) and index == 0))
        tuning = TUNING.get(name, "the library's defaults with --holdout (early stopping on valid NDCG@10)")
        add(summarise(name, tuning, seeds, train_seconds=median_of(seeds, "wall_seconds"), key=name))

    if "zero-shot" not in skip:
        what = f"{load_recipe(RECIPE).base_model}\n{task!r}"
        ranks = kept.row("zero-shot", what) or kept.keep(
            "zero-shot", what, llm_ranks(LLMRecommender.zero_shot(task), examples, "zero-shot")
        )
        add(summarise("base LLM zero-shot", TUNING["zero-shot"], [ranks], seconds_per_user=ranks["seconds_per_user"]))
    for name, (label, _) in LLM_ROWS.items():
        if name in skip:
            continue
        seeds = []
        for index in range(args.seeds if name in seeded_rows else 1):
            teacher = teacher_run(teacher_of(name), index)
            found = llm_row(name, index, teacher, args, kept)
            if found is None:
                digest = teacher_weights(name, teacher, index, kept) or ""
                trained, what = train_llm_run(name, teacher, args.work, args.steps, index, digest, args.users)
                recommender = LLMRecommender.from_run(args.work / f"sft-{seeded(name, index)}")
                figures = {k: trained.get(k) for k in ("train_seconds", "threads", "peak_rss_mib", "steps")}
                found = kept.keep(seeded(name, index), what, {**llm_ranks(recommender, examples, name), **figures})
            seeds.append(found)
        figures = {k: seeds[0].get(k) for k in ("threads", "steps")}
        figures |= {k: median_of(seeds, k) for k in ("train_seconds", "seconds_per_user")}
        figures["peak_rss_mib"] = max((s["peak_rss_mib"] for s in seeds if s.get("peak_rss_mib")), default=None)
        add(summarise(label, TUNING["recipe" if name == "recipe" else "other"], seeds, key=name, **figures))
    print(args.out.read_text() if "test" in splits else valid_report(rows, groups, users))


if __name__ == "__main__":
    main()
