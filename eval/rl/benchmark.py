"""RL benchmark on ML-100K: the two shipped RL recipes, before and after GRPO, three seeds, paired over users.

    .venv/bin/python eval/rl/benchmark.py                                # writes eval/rl/RESULTS.md and rewards.png
    .venv/bin/python eval/rl/benchmark.py --recipes rec-r1 --seeds 0     # one recipe, one seed
    .venv/bin/python eval/rl/benchmark.py --users 200 --max-steps 30     # a reduced budget, labelled as such
    .venv/bin/python eval/rl/benchmark.py --recipes pars --seeds 0 --splits valid   # develop: valid only, printed

**Rec-R1** (``adapters/smollm2-rl-rec-r1-bm25.yaml``): the LLM writes a search query from the user's history; BM25
over the catalog retrieves with it; full-catalog NDCG@10 and HR@10 of the user's next item. Rows: the last
history titles as the query (BM25, and MiniLM dense retrieval), the same items' titles and text attributes as the
query (BM25: all a prompt with ``attributes`` shows), the base LLM's own query (zero-shot: the RL
starting point), SASRec ranking the whole catalog (trained here with the library's defaults, or ``--sasrec``),
popularity (the most-interacted training items, one list for every user), and the RL runs. **PARS**
(``adapters/smollm2-rl-pars-c20.yaml``): reasoning over the c20 candidates (four sampled rationales per user,
grounded answers, weighted vote), HR@1 and NDCG@5. Rows: the base LLM with and without consistency pruning,
popularity among the candidates (how many users chose each in training: what a prompt with ``counts`` shows), and
the RL runs with pruning.

Each RL run trains as its own ``llmrec rl`` process (``--trainer seed=S``: the LoRA init, the prompt order and
the sampling), so its wall time and peak memory are its own; nothing is chosen after training (the shipped
recipe's last adapter is the configuration, fixed before any score). Valid and test rows score the same users: a
fixed random sample of ``--users`` (or all; by default all for Rec-R1, 300 for PARS). RL rows are the per-user
mean over seeds; differences are paired over users with 95% bootstrap intervals (:mod:`llmrec.ranking.intervals`);
"beats" means the interval is above zero. What the report is rendered from is kept in the repository, in
``eval/rl/kept`` (every row's per-user ranks, every RL run's recipe, training figures and per-step log), so a
benchmark stopped in one session goes on in another, on another machine: a run whose record and ranks are kept is
not trained again. The runs themselves (adapters, checkpoints) and SASRec are kept in ``--work`` (default
``$LLMREC_HOME/bench-rl``); a run started from another version of its recipe is trained again and its kept scores
dropped. LLM rows are served as ``llmrec`` serves runs (on vLLM without a GPU, each run from its merged checkpoint),
one engine in memory at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RECIPES = {"rec-r1": "smollm2-rl-rec-r1-bm25", "pars": "smollm2-rl-pars-c20"}
METRICS = {"rec-r1": ("ndcg@10", "hr@10"), "pars": ("hr@1", "ndcg@5")}
SAMPLE_SEED = 2026
AGAINST = {"rec-r1": ("base", "titles-bm25", "texts-bm25"), "pars": ("base",)}  # the rows RL is paired against
# Users scored per split by default. Rec-R1 scores every user: its hits are rare (HR@10 about 0.015, some 15 of 943
# users), so a 300-user sample decides nothing, and a query costs a fraction of a second. PARS samples four
# reasoning paths per user over 20 candidates: a sample keeps its rows to a machine session.
USERS = {"rec-r1": 0, "pars": 300}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default="rec-r1,pars", help="Comma-separated: rec-r1, pars.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--users", type=int, default=None,
        help="Users scored per split (0: all); default: all for rec-r1, 300 for pars (see USERS).",
    )  # fmt: skip
    parser.add_argument("--max-steps", type=int, default=0, help="Override the recipes' max_steps (0: theirs).")
    parser.add_argument(
        "--splits", default="valid,test", choices=["valid,test", "valid"],
        help="valid: score validation users only and print the rows (RESULTS.md and results.json untouched), for "
        "choices made while developing a recipe; test is scored once the recipe is frozen.",
    )  # fmt: skip
    parser.add_argument("--engine", default="vllm", choices=["hf", "vllm"], help="The engine of every LLM row.")
    parser.add_argument("--sasrec", type=Path, default=None, help="A trained SASRec run on ML-100K to reuse.")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--kept", type=Path, default=HERE / "results.json")
    parser.add_argument("--evidence", type=Path, default=HERE / "kept", help="Where ranks and run records are kept.")
    args = parser.parse_args()
    from llmrec.paths import llmrec_home

    work = args.work or llmrec_home() / "bench-rl"
    work.mkdir(parents=True, exist_ok=True)
    evidence = Evidence(args.evidence)
    kept = json.loads(args.kept.read_text()) if args.kept.exists() else {}
    command = "python eval/rl/benchmark.py " + " ".join(sys.argv[1:])
    stamp = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "command": command.strip(), "machine": machine()}
    for name in args.recipes.split(","):
        if name not in RECIPES:
            raise SystemExit(f"unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
        tags = [f"{row_tag(name, args.users)}-{which}" for which in args.splits.split(",")]
        runs = [train(name, seed, work, args.max_steps, evidence, tags) for seed in args.seeds]
        section = score(name, runs, work, evidence, args)
        records = [evidence.run(run.name) for run in runs]
        if None in records:
            unfinished = [run.name for run, record in zip(runs, records, strict=True) if record is None]
            raise SystemExit(f"{', '.join(unfinished)}: training did not finish; run the benchmark again to resume")
        section["training"] = training_figures(records)
        section = {**section, **stamp, "seeds": args.seeds, "max_steps": args.max_steps or "the recipe's"}
        if args.splits == "valid":
            print(render({name: section}, ("valid",)))
            continue
        kept[name] = section
        save(args.kept, kept)
    if args.splits == "valid":
        return
    plot_rewards(kept, evidence, HERE / "rewards.png")
    args.out.write_text(render(kept))
    print(args.out.read_text())


def machine() -> str:
    return f"{len(os.sched_getaffinity(0))} CPU cores ({platform.machine()})"


def save(path: Path, kept: dict[str, Any]) -> None:
    path.write_text(json.dumps(kept, indent=1, default=float) + "\n")


def llmrec(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "llmrec", *args], check=True)


# -- training


def run_name(name: str, seed: int, max_steps: int) -> str:
    """The run of recipe ``name`` with ``seed`` (and a reduced ``max_steps``; 0: the recipe's)."""
    return f"{name}-seed{seed}" + (f"-steps{max_steps}" if max_steps else "")


def train(name: str, seed: int, work: Path, max_steps: int, evidence: Evidence, tags: list[str]) -> Path:
    """The RL run of ``name`` with ``seed``: trained, resumed or reused, its record kept in ``evidence`` once it
    finishes. A run whose record is kept under the same recipe and whose ranks for every ``tags`` row are kept is
    not needed again (its directory may be gone). A run of an older version of the recipe is started over, its
    record and scores dropped; so is whatever is kept of a run trained again from nothing (its adapter gone, a row
    missing), so that no row mixes two trainings."""
    from llmrec.runs import config_file, read_metrics
    from llmrec.training.recipe import read_recipe

    run = work / run_name(name, seed, max_steps)
    recipe = read_recipe(RECIPES[name], trainer={"seed": seed, **({"max_steps": max_steps} if max_steps else {})})[0]
    stamp = run / "bench-recipe.json"
    record = evidence.run(run.name)
    if record is not None and record["recipe"] != recipe:
        print(f"{run.name}: its kept record is of another version of the recipe; dropping it", file=sys.stderr)
        evidence.drop(run.name)
        record = None
    if run.exists() and (not stamp.exists() or json.loads(stamp.read_text()) != recipe):
        print(f"{run.name}: its directory holds another version of the recipe; removing it", file=sys.stderr)
        shutil.rmtree(run)  # the kept record, if it matched above, is of the current recipe and stays
    if record is not None and all(evidence.has(f"{tag}-{run.name}") for tag in tags):
        return run
    if not run.exists():
        if record is not None:
            print(f"{run.name}: a row is not kept and the adapter is gone; training it again", file=sys.stderr)
        evidence.drop(run.name)
        run.mkdir(parents=True)
        stamp.write_text(json.dumps(recipe, indent=1) + "\n")
    if not read_metrics(run).get("finished"):
        command = ["rl", "--recipe", RECIPES[name], "--out", str(run), "--no-eval", "--trainer", f"seed={seed}"]
        if max_steps:
            command += ["--max-steps", str(max_steps)]
        if config_file(run).exists():
            command = ["rl", "--recipe", RECIPES[name], "--out", str(run), "--resume", "--no-eval"]
        llmrec(*command)
    if read_metrics(run).get("finished"):
        evidence.keep_run(run, recipe)
    return run


def training_figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    metrics = [record["metrics"] for record in records]
    return {
        "steps": metrics[0]["steps"],
        "prompts": metrics[0]["examples"],
        "seconds_per_step": [m["seconds_per_step"] for m in metrics],
        "train_minutes": [round(m["train_seconds"] / 60, 1) for m in metrics],
        "peak_gib": [round(m["peak_rss_mib"] / 1024, 2) for m in metrics],
        "rollout_validity": [validity_penalties(record["log"]) for record in records],
    }


def validity_penalties(log: list[dict[str, Any]]) -> float | None:
    """The sum of the mean validity reward over a run's logged steps (0: no invalid answer was ever sampled)."""
    values = [e["rewards/validity/mean"] for e in log if "rewards/validity/mean" in e]
    return float(sum(values)) if values else None


class Evidence:
    """What the report is rendered from, kept in the repository: each row's per-user ranks (``ranks/KEY.json``,
    with the row's answer report where it has one) and each RL run's recipe, training figures and per-step log
    (``runs/RUN.json``). Small text files: a benchmark continues from them in a later session, on another machine,
    where ``--work`` (the adapters) is gone."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _rank_file(self, key: str) -> Path:
        return self.root / "ranks" / f"{key}.json"

    def has(self, key: str) -> bool:
        return self._rank_file(key).exists()

    def ranks(self, key: str, compute: Any) -> np.ndarray:
        """The per-user ranks of row ``key``, computed once (``compute`` may also return a report of the answers,
        kept beside them)."""
        path = self._rank_file(key)
        if path.exists():
            return np.asarray(json.loads(path.read_text())["ranks"])
        from llmrec.runs import atomic_write_text

        found = compute()
        ranks, report = found if isinstance(found, tuple) else (found, None)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"ranks": np.asarray(ranks).tolist(), **({"report": report} if report is not None else {})}
        atomic_write_text(path, json.dumps(entry) + "\n")  # a kill mid-write leaves no half file to resume from
        return np.asarray(ranks)

    def reports(self, tag: str) -> dict[str, Any]:
        """The answer reports kept for the rows of ``tag`` (valid_ratio of reasoning paths, ...)."""
        out = {}
        for path in sorted((self.root / "ranks").glob(f"{tag}-*.json")):
            entry = json.loads(path.read_text())
            if "report" in entry:
                out[path.stem.removeprefix(f"{tag}-")] = entry["report"]
        return out

    def run(self, name: str) -> dict[str, Any] | None:
        path = self.root / "runs" / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def keep_run(self, run: Path, recipe: dict[str, Any]) -> None:
        """Keep a finished run's recipe, figures and per-step log."""
        from llmrec.runs import atomic_write_text, read_metrics

        metrics = read_metrics(run)
        figures = {k: metrics[k] for k in ("steps", "examples", "train_seconds", "seconds_per_step", "peak_rss_mib")}
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        path = self.root / "runs" / f"{run.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"recipe": recipe, "metrics": figures, "log": log}, indent=1) + "\n")

    def drop(self, name: str) -> None:
        """Forget run ``name``: its record and every row it scored."""
        (self.root / "runs" / f"{name}.json").unlink(missing_ok=True)
        for path in (self.root / "ranks").glob(f"*-{name}.json"):
            path.unlink()


# -- scoring


def sampled_users(task: Any, dataset: Any, count: int) -> tuple[list[Any], list[Any]]:
    """The valid and test examples of the same ``count`` users (a fixed random sample, or all)."""
    from llmrec.eval.generated import eval_examples

    valid, test = eval_examples(dataset, task, "valid"), eval_examples(dataset, task, "test")
    users = sorted({e.user for e in valid} & {e.user for e in test})
    if count and count < len(users):
        users = sorted(np.random.default_rng(SAMPLE_SEED).choice(users, count, replace=False).tolist())
    keep = set(users)
    return [e for e in valid if e.user in keep], [e for e in test if e.user in keep]


class Engines:
    """The LLM engine of each row, started when a row first needs it (rows already kept need none) and closed when
    another is started: one engine in memory at a time. A run is served as ``llmrec`` serves it (on vLLM without a
    GPU, from its merged checkpoint)."""

    def __init__(self, kind: str) -> None:
        self.kind, self.key, self.engine, self.lora = kind, None, None, None
        self.options = {"kv_cache_gib": 2.0} if kind == "vllm" else {}

    def __call__(self, run: Path | None = None) -> tuple[Any, str | None]:
        """The engine of ``run`` (``None``: the base model) and the adapter its requests carry."""
        from llmrec.inference.recommender import LLMRecommender
        from llmrec.inference.registry import load_engine

        if self.key != (run or "base"):
            self.close()
            if run is None:
                self.engine, self.lora = load_engine(self.kind, None, **self.options), None
            else:
                served = LLMRecommender.from_run(run, engine=self.kind, **self.options)
                self.engine, self.lora = served.engine, served.lora
            self.key = run or "base"
        return self.engine, self.lora

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
        self.key, self.engine, self.lora = None, None, None


def row_tag(name: str, users: int | None) -> str:
    """The prefix of recipe ``name``'s kept rows: the users scored and the history window shape every row."""
    from llmrec.training.rl_recipe import load_rl_recipe

    count = USERS[name] if users is None else users
    task = load_rl_recipe(RECIPES[name]).task
    return f"{name}-u{count}-h{task.max_history}" + ("-counts" if task.counts else "")  # counts change the prompt


def score(name: str, runs: list[Path], work: Path, evidence: Evidence, args: argparse.Namespace) -> dict[str, Any]:
    from llmrec.data.builtin import load_dataset
    from llmrec.training.rl_recipe import load_rl_recipe

    recipe = load_rl_recipe(RECIPES[name])
    dataset = load_dataset(recipe.dataset)
    users = USERS[name] if args.users is None else args.users
    splits = dict(zip(("valid", "test"), sampled_users(recipe.task, dataset, users), strict=True))
    splits = {which: examples for which, examples in splits.items() if which in args.splits.split(",")}
    engines = Engines(args.engine)
    tag = row_tag(name, args.users)
    rows: dict[str, dict[str, np.ndarray]] = {}
    try:
        for which, examples in splits.items():
            key = f"{tag}-{which}"
            if name == "rec-r1":
                found = query_rows(engines, recipe, dataset, examples, runs, work, evidence, key, args.sasrec)
            else:
                found = reasoning_rows(engines, dataset, examples, runs, evidence, key)
            for row, ranks in found.items():
                rows.setdefault(row, {})[which] = ranks
    finally:
        engines.close()
    section = summarise(name, rows, {which: len(e) for which, e in splits.items()})
    named = {"base", "base-unpruned", *(run.name for run in runs)}  # not other seeds' or reduced runs' reports
    section["answers"] = {
        which: {row: report for row, report in evidence.reports(f"{tag}-{which}").items() if row in named}
        for which in splits
    }
    return section


def query_rows(engines, recipe, dataset, examples, runs, work, evidence, tag, sasrec) -> dict[str, np.ndarray]:
    from llmrec.catalog.catalog import Catalog
    from llmrec.catalog.retrievers import make_retriever
    from llmrec.eval.generated import generate_queries, query_ranks
    from llmrec.inference.answers import query_decoding

    bm25, dense = make_retriever("bm25", dataset), make_retriever("dense", dataset, device="cpu")
    targets = [e.target for e in examples]
    titles = ["; ".join(str(dataset.titles[i]) for i in e.history) for e in examples]
    texts = ["; ".join(str(dataset.described_titles[i]) for i in e.history) for e in examples]
    # The base model writes its query as the recipe's rollouts decode it: one free line, or catalog titles.
    grounding, count = query_decoding(Catalog.from_dataset(dataset), recipe.grounding, recipe.query_titles)
    decoding = f"titles{count}" if grounding is not None else "line"
    # The prompt the base model answers differs with the attributes and the template.
    decoding += "-attributes" if recipe.task.attributes else ""
    decoding += f"-{recipe.task.template}" if recipe.task.template else ""

    def llm(run: Path | None) -> np.ndarray:
        engine, lora = engines(run)
        return query_ranks(bm25, generate_queries(engine, examples, lora, grounding, count)[0], targets)

    out = {
        "titles-bm25": evidence.ranks(f"{tag}-titles-bm25", lambda: query_ranks(bm25, titles, targets)),
        "titles-dense": evidence.ranks(f"{tag}-titles-dense", lambda: query_ranks(dense, titles, targets)),
        "texts-bm25": evidence.ranks(f"{tag}-texts-bm25", lambda: query_ranks(bm25, texts, targets)),
        "sasrec": evidence.ranks(f"{tag}-sasrec", lambda: sasrec_ranks(dataset, examples, work, sasrec)),
        "pop": evidence.ranks(f"{tag}-pop", lambda: popularity_ranks(dataset, examples)),
        "base": evidence.ranks(f"{tag}-base-{decoding}", lambda: llm(None)),
    }
    out["rl"] = np.stack([evidence.ranks(f"{tag}-{run.name}", lambda run=run: llm(run)) for run in runs])
    return out


def sasrec_ranks(dataset: Any, examples: list[Any], work: Path, given: Path | None) -> np.ndarray:
    """SASRec's 0-based rank of each target in the whole catalog after the example's whole prefix."""
    import torch

    from llmrec.data.splits import leave_one_out_split
    from llmrec.encoders.base import left_padded
    from llmrec.encoders.run import load_best

    run = given or work / "sasrec"
    if not (run / "metrics.json").exists():  # written when training ends: an interrupted run is resumed
        resume = ["--resume"] if (run / "config.yaml").exists() else []
        llmrec("encoder", "train", "--dataset", "ml-100k", "--model", "sasrec", "--out", str(run), *resume)
    encoder = load_best(run).eval()
    split = leave_one_out_split(dataset, min_len=3)
    ranks = []
    with torch.inference_mode():
        for start in range(0, len(examples), 256):
            chunk = examples[start : start + 256]
            prefixes = [split.sequences[e.user][: e.position] for e in chunk]
            scores = encoder.score(left_padded(prefixes, encoder.config.max_len)).double().numpy()
            ranks += catalog_ranks(scores, [e.target for e in chunk]).tolist()
    return np.asarray(ranks)


def catalog_ranks(scores: np.ndarray, targets: list[int]) -> np.ndarray:
    """Each row's 0-based rank of its target among the catalog's items (``scores`` ``[B, N+1]``, column 0 the
    padding item, left out); ties count against the target."""
    from llmrec.ranking.metrics import target_ranks

    scores = np.array(scores, dtype=np.float64)
    scores[:, 0] = 0.0  # an encoder's -inf there: left out by the mask, and target_ranks takes finite scores only
    items = np.ones(scores.shape, dtype=bool)
    items[:, 0] = False
    return target_ranks(scores, np.asarray(targets), items)


def popularity_ranks(dataset: Any, examples: list[Any]) -> np.ndarray:
    """The 0-based rank of each target in the whole catalog ordered by training interactions (the same list for
    every user): the floor a query that names the same popular items for everyone would reach."""
    from llmrec.data.splits import leave_one_out_split
    from llmrec.encoders.pop import Pop, PopConfig

    split = leave_one_out_split(dataset, min_len=3)
    pop = Pop(dataset.num_items, PopConfig())
    pop.fit([sequence[:length] for sequence, length in zip(split.sequences, split.train_len, strict=True)])
    counts = pop.item_embeddings()[:, 0].double().numpy()
    return catalog_ranks(np.tile(counts, (len(examples), 1)), [e.target for e in examples])


def candidate_popularity_ranks(dataset: Any, examples: list[Any]) -> np.ndarray:
    """The 0-based rank of each target among its c20 candidates ordered by how many users chose each in the
    training prefixes (ties count against the target): what a prompt's counts alone give, with no LLM."""
    from llmrec.data.dataset import user_counts
    from llmrec.data.splits import leave_one_out_split
    from llmrec.ranking.metrics import target_ranks

    split = leave_one_out_split(dataset, min_len=3)
    counts = user_counts(split.train_sequences(), dataset.num_items).astype(np.float64)
    scores = np.stack([counts[np.asarray(e.candidates)] for e in examples])
    return target_ranks(scores, np.asarray([e.candidates.index(e.target) for e in examples]))


def reasoning_rows(engines, dataset, examples, runs, evidence, tag) -> dict[str, np.ndarray]:
    from functools import cache

    from llmrec.eval.generated import reasoning_ranks_by_rule
    from llmrec.inference.reasoning import ReasoningConfig

    @cache
    def llm(run: Path | None) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """Both pruning rules' rows of ``run`` from one sample of paths."""
        engine, lora = engines(run)
        return reasoning_ranks_by_rule(engine, dataset, examples, lora, ReasoningConfig(), ("none", "both"))

    out = {
        "base-unpruned": evidence.ranks(f"{tag}-base-unpruned", lambda: llm(None)["none"]),
        "base": evidence.ranks(f"{tag}-base", lambda: llm(None)["both"]),
        "pop": evidence.ranks(f"{tag}-pop", lambda: candidate_popularity_ranks(dataset, examples)),
    }
    out["rl"] = np.stack([evidence.ranks(f"{tag}-{run.name}", lambda run=run: llm(run)["both"]) for run in runs])
    return out


def summarise(name: str, rows: dict[str, dict[str, np.ndarray]], users: dict[str, int]) -> dict[str, Any]:
    from llmrec.ranking.intervals import paired_bootstrap, per_user

    metrics = METRICS[name]
    against = AGAINST[name]
    out: dict[str, Any] = {"users": users, "rows": {}}
    for row, by_split in rows.items():
        entry: dict[str, Any] = {}
        for which, ranks in by_split.items():
            values = {m: per_user(ranks, m) for m in metrics}  # [users] or [seeds, users]
            figures: dict[str, Any] = {m: float(v.mean()) for m, v in values.items()}
            if ranks.ndim == 2:
                figures["per_seed"] = {m: v.mean(axis=1).round(4).tolist() for m, v in values.items()}
                for other in against:
                    base = rows[other][which]
                    figures[f"vs_{other}"] = {
                        m: paired_bootstrap(values[m], per_user(base, m)).to_dict() for m in metrics
                    }
            entry[which] = figures
        out["rows"][row] = entry
    return out


# -- report


def plot_rewards(kept: dict[str, Any], evidence: Evidence, path: Path) -> None:
    """Each recipe's reward components over training steps (mean over seeds, 10-step moving average)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves_of = {}
    for name in (n for n in RECIPES if n in kept):
        steps = kept[name]["max_steps"]
        runs = [run_name(name, seed, 0 if steps == "the recipe's" else steps) for seed in kept[name]["seeds"]]
        records = [evidence.run(run) for run in runs]
        if None in records:
            # A recipe kept by an older benchmark has rows but no logs: its curves are left out, not the others'.
            missing = ", ".join(run for run, record in zip(runs, records, strict=True) if record is None)
            print(f"{missing}: no training log in {evidence.root}; {name} left out of {path.name}", file=sys.stderr)
            continue
        curves_of[name] = [record["log"] for record in records]
    if not curves_of:
        return
    figure, axes = plt.subplots(1, len(curves_of), figsize=(6 * len(curves_of), 4), squeeze=False)
    for axis, (name, logs) in zip(axes[0], curves_of.items(), strict=True):
        keys = {k for log in logs for e in log for k in e}
        components = sorted(k for k in keys if k.startswith("rewards/") and k.endswith("/mean"))
        for key in [*components, "reward"]:
            curves = [np.array([e[key] for e in log if key in e]) for log in logs]
            length = min(len(c) for c in curves)
            mean = np.mean([c[:length] for c in curves], axis=0)
            smooth = np.convolve(mean, np.ones(10) / 10, mode="valid") if length >= 10 else mean
            axis.plot(np.arange(len(smooth)) + 1, smooth, label=key.removeprefix("rewards/").removesuffix("/mean"))
        axis.set_title(f"{RECIPES[name]} (mean of {len(logs)} seeds)")
        axis.set_xlabel("GRPO step")
        axis.set_ylabel("reward (10-step moving average)")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


# What each recipe's settings were chosen on: said beside its rows (DESIGN.md, evaluation discipline).
SETUP = {
    "rec-r1": "Chosen on validation users only (seed 0; the tries are listed below): the prompt, the history window, "
    "the reward's depth, the learning rate. Test is scored once, for the shipped recipe. The baselines have no "
    "setting of their own: the history window is the recipe's, SASRec runs at the library's defaults, popularity "
    "counts the training prefixes.",
    "pars": "Chosen on the 300 validation users only (seed 0; the tries are listed below): the learning rate. Test is "
    "scored once, for the shipped recipe. The base rows are the same model and reasoning engine without the adapter, "
    "from one sample of paths ranked with and without pruning.",
}
TRIALS = HERE / "trials.json"  # the tries on validation that led to each shipped recipe, as measured


LABELS = {
    "rec-r1": {
        "titles-bm25": "last history titles as the query, BM25",
        "titles-dense": "last history titles as the query, MiniLM dense",
        "texts-bm25": "last history items' titles and attributes (year, genres) as the query, BM25",
        "sasrec": "SASRec over the whole catalog (library defaults)",
        "pop": "popularity: the most-interacted items, the same list for every user",
        "base": "base LLM's query (zero-shot), BM25: the RL starting point",
        "rl": "after RL (Rec-R1 recipe), BM25",
    },
    "pars": {
        "base-unpruned": "base LLM reasoning, no pruning",
        "base": "base LLM reasoning, consistency pruning: the RL starting point",
        "pop": "popularity: the candidate most users chose in training (no LLM)",
        "rl": "after RL (PARS recipe), consistency pruning",
    },
}


def render(kept: dict[str, Any], splits: tuple[str, ...] = ("valid", "test")) -> str:
    lines = ["# RL benchmark", "", "Reward components over training: [rewards.png](rewards.png).", ""]
    for name in RECIPES:
        if name not in kept:
            continue
        section, metrics = kept[name], METRICS[name]
        train_info = section["training"]
        lines += [
            f"## {RECIPES[name]}",
            "",
            f"Reported {section['date']} on {section['machine']} by `{section['command']}` (a run or row already "
            "kept in eval/rl/kept is reused, not measured again): seeds "
            f"{section['seeds']}, {train_info['steps']} GRPO steps each ({section['max_steps']} max_steps) over "
            f"{train_info['prompts']} training prompts; {section['users']['valid']} users scored on each split "
            "(the same users). Training per seed: "
            f"{', '.join(f'{m} min' for m in train_info['train_minutes'])} "
            f"({', '.join(f'{s:.1f}' for s in train_info['seconds_per_step'])} s per step), peak "
            f"{max(train_info['peak_gib']):.2f} GiB.",
            "",
        ]
        lines += [SETUP[name], ""]
        if name == "pars":
            ratios = [r["valid_ratio"] for reports in section["answers"].values() for r in reports.values()]
            penalties = train_info["rollout_validity"]
            lines += [
                f"Grounding: the validity reward summed over every training step of every seed is {penalties} (0: "
                f"no invalid rollout answer); the reasoning paths' valid ratio over every scored row is "
                f"{min(ratios):.3f} at the lowest.",
                "",
            ]
        against = [c for c in AGAINST[name] if f"vs_{c}" in section["rows"]["rl"]["valid"]]
        head = " | ".join(f"{m} vs {c}" for c in against for m in metrics)
        lines += [
            f"| row | split | {' | '.join(metrics)} | per seed | {head} |",
            "| --- | --- |" + " ---: |" * len(metrics) + " --- |" + " --- |" * (len(against) * len(metrics)),
        ]
        for row, label in LABELS[name].items():
            for which in splits if row in section["rows"] else ():
                e = section["rows"][row][which]
                seeds = "; ".join(f"{m} {e['per_seed'][m]}" for m in metrics) if "per_seed" in e else ""
                diffs = [interval(e[f"vs_{c}"][m]) if f"vs_{c}" in e else "" for c in against for m in metrics]
                lines.append(
                    f"| {label} | {which} | {' | '.join(f'{e[m]:.4f}' for m in metrics)} | {seeds} | "
                    f"{' | '.join(diffs)} |"
                )
        lines.append("")
        lines += trials(name)
    return "\n".join(lines)


def trials(name: str) -> list[str]:
    """The table of the tries on validation that led to recipe ``name`` (none kept: no table)."""
    kept = json.loads(TRIALS.read_text()).get(name) if TRIALS.exists() else None
    if not kept:
        return []
    rows = [f"| {t['changes']} | {t['outcome']} |" for t in kept["trials"]]
    return ["### Tries on validation", "", kept["how"], "", "| try | outcome |", "| --- | --- |", *rows, ""]


def interval(value: dict[str, Any]) -> str:
    text = f"{value['diff']:+.4f} [{value['low']:+.4f}, {value['high']:+.4f}]"
    return f"**{text}**" if value["beats"] else text


if __name__ == "__main__":
    main()
