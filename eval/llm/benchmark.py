"""LLM-recommender benchmark on ML-100K: every row scored on the very same c20 candidates, in one run.

    .venv/bin/python eval/llm/benchmark.py                          # writes eval/llm/RESULTS.md
    .venv/bin/python eval/llm/benchmark.py --steps 60 --users 200   # a reduced budget, labelled as such
    .venv/bin/python eval/llm/benchmark.py --sasrec runs/sasrec     # reuse a trained SASRec run
    .venv/bin/python eval/llm/benchmark.py --skip zero-shot,text      # leave rows out (named in the RESULTS command)

Rows: random scores, popularity, the encoders (SASRec, GRU4Rec: trained here with their default configs, or
given), the base LLM zero-shot (text prompts), and LoRA fine-tunings of the shipped recipe
``adapters/smollm2-sasrec-mlp.yaml`` that differ only in how items reach the LLM (``LLM_ROWS``): titles only,
``<item-emb>`` alone with SASRec ids, ``<item-emb>`` plus SASRec's user state as ``<user-emb>`` (the recipe),
and ``<item-emb>`` alone with SASRec + MiniLM vectors. (Titled prompts, ``Title <item-emb>``, are about four
times longer: on 2 cores a titled row trains for over an hour, which is why only the titles-only row has them.)
Each fine-tuning runs as its own ``llmrec sft`` process on the recipe written to ``WORK/recipe-NAME.yaml`` (its
wall time and peak memory are its own). Every row ranks the c20 test candidates of the same users (the first
``--users`` of the test split, or all): HR@1, NDCG@5, NDCG@10, and how each row answers.
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
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RECIPE = ROOT / "llmrec" / "recipes" / "smollm2-sasrec-mlp.yaml"
BUDGET_FILE = "benchmark-budget.json"  # in each LLM run: the recipe text, --steps and encoder it was trained from
# The LLM rows: the shipped recipe with these changes, nothing else (name: label, recipe changes).
LLM_ROWS = {
    # Titles carry no vectors to score the candidates with: this row answers with the candidate's letter.
    "text": (
        "LLM + LoRA, titles only (letter verbalizer)",
        {
            "representation": "none",
            "task": {"user_vector": False, "output": "verbalizer"},
            # the answer tokens' LM loss (item_loss and distill are for item scores)
            "trainer": {"item_loss": "candidates", "distill": 0.0},
        },
    ),
    # Without SASRec's user state in the prompt, the recipe's distillation from SASRec's scores has no input.
    "id-vector": (
        "LLM + LoRA + SASRec ID projector, `<item-emb>` only",
        {"task": {"user_vector": False}, "trainer": {"distill": 0.0}},
    ),
    "recipe": (
        "LLM + LoRA + SASRec ID projector, `<item-emb>` + `<user-emb>`, distilled from SASRec (the recipe)",
        {},
    ),
    # The recipe's vector prompts with SASRec + MiniLM item vectors (the user state is SASRec's alone: id only).
    "hybrid": (
        "LLM + LoRA + hybrid (SASRec + MiniLM) projector, `<item-emb>` only",
        {"representation": "hybrid", "task": {"user_vector": False}, "trainer": {"distill": 0.0}},
    ),
}


def metrics_of(scores: np.ndarray, examples: list) -> dict[str, Any]:
    """HR@1, NDCG@5/10 of ``scores [E, 20]``; the answer is the top-scored candidate (always a candidate)."""
    from llmrec.eval.llm import SCORED
    from llmrec.ranking.metrics import ranking_metrics, target_ranks

    ranks = target_ranks(scores, np.array([e.target_index for e in examples]))
    return {**ranking_metrics(ranks, (1, 5, 10)), "answers": SCORED}


def encoder_scores(run: Path, split: Any, examples: list) -> np.ndarray:
    """An encoder run's scores of each example's candidates after the user's history (as its c20 eval)."""
    import torch

    from llmrec.data.splits import EvalSet
    from llmrec.encoders.run import load_best
    from llmrec.ranking.protocols import history_matrix

    model = load_best(run).eval()
    evals = split.eval_set("test")
    first = EvalSet(evals.users[: len(examples)], evals.cutoffs[: len(examples)], evals.targets[: len(examples)])
    seqs = history_matrix(split, first, model.config.max_len)
    candidates = torch.tensor([e.candidates for e in examples])
    with torch.inference_mode():
        return model.score(torch.from_numpy(seqs), candidates).float().numpy()


def train_encoder_run(name: str, work: Path) -> tuple[Path, float]:
    """Train encoder ``name`` with its default config (skipped when already trained); wall seconds."""
    run = work / name
    if (run / "metrics.json").exists():
        return run, json.loads((run / "metrics.json").read_text()).get("wall_seconds", 0.0)
    started = time.perf_counter()
    command = [sys.executable, "-m", "llmrec", "encoder", "train", "--dataset", "ml-100k", "--model", name]
    resume = ["--resume"] if (run / "config.yaml").exists() else []
    subprocess.run([*command, "--out", str(run), *resume], check=True)
    return run, time.perf_counter() - started


def row_recipe(name: str, sasrec: Path, work: Path) -> Path:
    """The shipped recipe with row ``name``'s changes and SASRec run ``sasrec``, as ``work/recipe-NAME.yaml``."""
    import yaml

    from llmrec.training.recipe import load_recipe, recipe_from_dict

    values = load_recipe(RECIPE).to_dict()
    for key, change in LLM_ROWS[name][1].items():
        values[key] = {**values[key], **change} if isinstance(change, dict) else change
    values["encoder"] = str(sasrec)
    recipe_from_dict(values)  # a bad combination fails here, before any training
    path = work / f"recipe-{name}.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def encoder_digest(run: Path) -> str:
    """SHA-256 of an encoder run's best weights: which SASRec a fine-tuning was trained on, even if a run was
    retrained at the same path."""
    from llmrec.runs import best_checkpoint

    return hashlib.sha256((best_checkpoint(run) / "model.safetensors").read_bytes()).hexdigest()


def budget_of(recipe_text: str, steps: int, encoder: str = "") -> str:
    """What a fine-tuning was trained from, comparable across llmrec versions: the recipe as the current code
    reads it (a field added since, at its default, changes nothing), the ``--steps`` override and the encoder's
    weights (``encoder_digest``; empty for a run kept before the digest was recorded, which never matches)."""
    import yaml

    from llmrec.errors import LlmrecError
    from llmrec.training.recipe import recipe_from_dict

    try:
        values = recipe_from_dict(yaml.safe_load(recipe_text)).to_dict()
    except LlmrecError as error:  # a recipe of an older llmrec: never the same budget
        return f"unreadable recipe: {error}"
    if steps:
        values["trainer"]["max_steps"] = steps
    values["encoder_weights"] = encoder
    return json.dumps(values, sort_keys=True)


def train_llm_run(name: str, sasrec: Path, work: Path, steps: int) -> tuple[dict[str, Any], str]:
    """One ``llmrec sft`` process for row ``name``'s recipe; its metrics.json and its budget (``budget_of``).

    A run of the same recipe and budget left in ``work`` by an earlier invocation is reused when finished and
    resumed when interrupted; a run of another recipe, budget or encoder (``BUDGET_FILE`` differs) is deleted and
    retrained.
    """
    run = work / f"sft-{name}"
    recipe = row_recipe(name, sasrec, work)
    wanted = budget_of(recipe.read_text(), steps, encoder_digest(sasrec))
    budget = run / BUDGET_FILE
    if run.exists() and (not budget.exists() or budget_of(**json.loads(budget.read_text())) != wanted):
        print(f"{run}: trained from another recipe, budget or encoder; retraining", file=sys.stderr)
        shutil.rmtree(run)
    if not (run / "metrics.json").exists() or not json.loads((run / "metrics.json").read_text()).get("finished"):
        command = [sys.executable, "-m", "llmrec", "sft", "--recipe", str(recipe), "--out", str(run)]
        command += ["--no-eval", "--json"]
        if steps:
            command += ["--max-steps", str(steps)]
        if (run / "config.yaml").exists():
            command.append("--resume")
        run.mkdir(parents=True, exist_ok=True)
        kept = {"recipe_text": recipe.read_text(), "steps": steps, "encoder": encoder_digest(sasrec)}
        budget.write_text(json.dumps(kept) + "\n")
        subprocess.run(command, check=True)
    return json.loads((run / "metrics.json").read_text()), wanted


def llm_row(name: str, key: str, work: Path, make: Any, users: int) -> dict[str, float]:
    """c20 metrics of the LLM recommender ``make()`` on the first ``users`` test users, and its s/user.

    Kept in ``work/eval-NAME.json`` under ``key`` (what was scored: the run's recipe, budget and final loss, or
    the zero-shot task) so that an invocation that only adds rows does not score the others again; delete the
    file to score anew.
    """
    from llmrec.eval.llm import evaluate_llm

    kept = work / f"eval-{name}.json"
    key = f"{key}\n# users {users}"
    if kept.exists() and json.loads(kept.read_text())["key"] == key:
        return json.loads(kept.read_text())["row"]
    recommender = make()
    try:
        result = evaluate_llm(recommender, "test", limit=users)
    finally:
        recommender.close()
    row = {k: result[k] for k in ("hr@1", "ndcg@5", "ndcg@10", "answers")}
    row["seconds_per_user"] = result["seconds"] / max(1, result["examples"])
    kept.write_text(json.dumps({"key": key, "row": row, "measured": f"{datetime.now(UTC):%Y-%m-%d}"}) + "\n")
    return row


def answer_cell(row: dict[str, Any]) -> str:
    """How a row answers (rows kept from before this column carry none: they were all scored)."""
    from llmrec.eval.llm import SCORED

    return row.get("answers", SCORED)


def write_results(out: Path, rows: list[dict[str, Any]], args: argparse.Namespace, wall: float, users: int) -> None:
    """RESULTS.md: the table and how it was measured."""
    budget = f"{args.steps} optimiser steps each (a reduced budget)" if args.steps else "the recipe's budget"
    lines = [
        "# LLM-recommender benchmark: ML-100K, c20 (LLaRA's 20-candidate protocol)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} CPU cores ({platform.machine()}) by "
        f"`{' '.join(['python', 'eval/llm/benchmark.py', *sys.argv[1:]])}` ({wall / 60:.0f} min; fine-tunings and "
        "scores kept from earlier invocations are reused, each row's train time is its own run's).",
        "",
        f"Every row ranks the same candidates of the same {users} test users (the c20 protocol's target + 19 "
        "unseen items, saved with the split). LLM rows: the bundled SmolLM2-135M-Instruct, the shipped recipe "
        f"`adapters/smollm2-sasrec-mlp.yaml` (rank task, 10 history items) trained for {budget}; "
        "only how items reach the LLM differs (`LLM_ROWS` in the script). Scores: each candidate's projected "
        "vector dotted with the LLM's last hidden state (the recipe's `output: item`); for the titles-only row and "
        "the zero-shot LLM, each label's log-probability as the complete answer; "
        "ties count against the target. answer = how the row's served answer is chosen (every row here serves its "
        "best-scored candidate, so its answer is a candidate by construction: no valid ratio is claimed). "
        "Train = wall time of the training process (with the torch threads it ran on); peak = its peak resident "
        "memory. Fine-tunings and their scores are kept in the work directory and reused by later invocations "
        "(see the script), so a row may come from an earlier invocation of the same recipe and budget.",
        "",
        "| model | HR@1 | NDCG@5 | NDCG@10 | answer | train | peak MiB | s/user (eval) |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        train = f"{row['train_seconds'] / 60:.1f} min" if row.get("train_seconds") else "-"
        if row.get("threads"):
            train += f" ({row['threads']} thread{'s' if row['threads'] > 1 else ''})"
        peak = f"{row['peak_rss_mib']:.0f}" if row.get("peak_rss_mib") else "-"
        speed = f"{row['seconds_per_user']:.2f}" if row.get("seconds_per_user") else "-"
        lines.append(
            f"| {row['model']} | {row['hr@1']:.4f} | {row['ndcg@5']:.4f} | {row['ndcg@10']:.4f} | "
            f"{answer_cell(row)} | {train} | {peak} | {speed} |"
        )
    lines += [
        "",
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
    (out.parent / "results.json").write_text(json.dumps(rows, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=0, help="Optimiser steps per fine-tuning (0: the recipe's).")
    parser.add_argument("--users", type=int, default=0, help="Evaluate the first N test users (0: all 943).")
    parser.add_argument("--sasrec", type=Path, help="A trained SASRec run to use (default: train one).")
    parser.add_argument("--gru4rec", type=Path, help="A trained GRU4Rec run to use (default: train one).")
    parser.add_argument(
        "--skip", default="", help=f"Comma-separated rows to leave out: gru4rec, zero-shot, {', '.join(LLM_ROWS)}."
    )
    parser.add_argument(
        "--work", type=Path, help="Where runs and scores are kept (default: $LLMREC_HOME/bench-llm, see the README)."
    )
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    if args.work is None:
        from llmrec.paths import llmrec_home

        args.work = llmrec_home() / "bench-llm"
    unknown = skip - {"gru4rec", "zero-shot", *LLM_ROWS}
    if unknown:
        parser.error(f"--skip: unknown rows {', '.join(sorted(unknown))}")

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
    task = replace(load_recipe(RECIPE).task, item_text="title", template=None, user_vector=False, output="verbalizer")
    examples = build_examples(dataset, split, "test", task)
    if args.users:
        examples = examples[: args.users]
    rows: list[dict[str, Any]] = []

    def add(row: dict[str, Any]) -> None:
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
        write_results(args.out, rows, args, time.perf_counter() - started, len(examples))

    rng = np.random.default_rng(0)
    add({"model": "random", **metrics_of(rng.random((len(examples), 20)), examples)})
    counts = np.bincount(np.concatenate(split.train_sequences()), minlength=dataset.num_items + 1)
    pop = np.array([[counts[c] for c in e.candidates] for e in examples], dtype=np.float64)
    add({"model": "pop", **metrics_of(pop, examples)})
    encoders = {"sasrec": args.sasrec, "gru4rec": None if "gru4rec" in skip else args.gru4rec}
    sasrec = None
    for name, given in encoders.items():
        if name in skip:
            continue
        run, wall = (given, 0.0) if given else train_encoder_run(name, args.work)
        sasrec = run if name == "sasrec" else sasrec
        add({"model": name, **metrics_of(encoder_scores(run, split, examples), examples), "train_seconds": wall})
    assert sasrec is not None

    if "zero-shot" not in skip:
        row = llm_row("zero-shot", repr(task), args.work, lambda: LLMRecommender.zero_shot(task), len(examples))
        add({"model": "base LLM zero-shot", **row})
    for name, (label, _) in LLM_ROWS.items():
        if name in skip:
            continue
        trained, budget = train_llm_run(name, sasrec, args.work, args.steps)
        run = args.work / f"sft-{name}"
        key = f"{budget}\n# train_loss {trained['train_loss']}"
        row = llm_row(name, key, args.work, lambda run=run: LLMRecommender.from_run(run), len(examples))
        add(
            {
                "model": label,
                **row,
                "train_seconds": trained["train_seconds"],
                "threads": trained.get("threads"),
                "peak_rss_mib": trained["peak_rss_mib"],
                "steps": trained["steps"],
            }
        )
    print(args.out.read_text())


if __name__ == "__main__":
    main()
