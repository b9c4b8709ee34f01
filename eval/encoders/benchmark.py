"""Encoder benchmark on ML-100K (leave-one-out): our encoders beside RecBole 1.2.1's, measured in one run.

    .venv/bin/python eval/encoders/benchmark.py                   # every model + RecBole peers, writes RESULTS.md
    .venv/bin/python eval/encoders/benchmark.py --models sasrec   # re-measure one pair, keep the other rows
    .venv/bin/python eval/encoders/benchmark.py --peers none      # ours only

Each model trains in its own process (so its peak memory is its own) with the same sizes on both sides:
hidden size 64, 2 layers (SASRec, BERT4Rec; GRU4Rec 1 layer), max length 50, full-softmax cross-entropy,
early stopping on validation NDCG@10 with patience 10. Reported: HR@10 / NDCG@10 / MRR@10 on the test split with
full ranking (history not masked, as RecBole does for sequential models), HR@1 on the c20 protocol (ours only:
RecBole has no c20), seconds per epoch, epochs, wall time to the converged model, and peak resident memory.
The RecBole rows come from ``recbole_peer.py``, which trains RecBole in its own throwaway venv on the identical
split. Each of our models is measured right beside its RecBole peer in the same invocation, so a pair's ratios
are side by side; a full run takes a few hours on 2 cores, so every finished row is kept in
``eval/encoders/results.json`` (with its date and command) as soon as it is measured, ``--models`` re-measures
only the named pairs, and the table in ``eval/encoders/RESULTS.md`` (also printed) is rendered from all kept rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Regularisation as in RecBole's defaults for each model (properties/model/*.yaml), sizes as in SHARED.
OURS = {
    "sasrec": {"num_layers": 2, "num_heads": 2, "dropout": 0.5, "attn_dropout": 0.5},
    "bert4rec": {"num_layers": 2, "num_heads": 2, "dropout": 0.2, "attn_dropout": 0.2, "mask_prob": 0.2},
    "gru4rec": {"num_layers": 1, "dropout": 0.3},
    "pop": {},
}
PEERS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "bert4rec": "BERT4Rec"}
SHARED = {"hidden_size": 64, "max_len": 50, "loss": "ce"}
# SASRec trains every target with its full 50-item context (stride 1), as RecBole's per-prefix examples do.
TRAIN = {"sasrec": {"stride": 1}}
ORDER = ["sasrec", "bert4rec", "gru4rec", "pop"]


def train_child(model: str, run: Path, epochs: int) -> None:
    """Runs inside the child process: train one of our encoders and print its figures as one JSON line."""
    from llmrec.encoders.train import train_encoder
    from llmrec.eval.runner import evaluate_run

    encoder = {} if model == "pop" else SHARED | OURS[model]
    training = {"epochs": epochs, "patience": 10} | TRAIN.get(model, {})
    cpu = time.process_time()
    metrics = train_encoder(run, model, "ml-100k", encoder, training)
    cpu = time.process_time() - cpu
    c20 = evaluate_run(run, protocol="c20")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"metrics": metrics, "c20_hr@1": c20["hr@1"], "peak_mib": peak, "cpu_seconds": cpu}))


def memory_child(workdir: Path) -> None:
    """Runs inside the child process: one SASRec epoch on a synthetic 20k-user, 12k-item dataset; prints peak MiB."""
    import numpy as np
    import pandas as pd

    from llmrec.data.dataset import RawData, encode, write_dataset
    from llmrec.encoders.train import train_encoder

    rng = np.random.default_rng(0)
    users, items = 20_000, 12_000
    lengths = rng.integers(5, 100, size=users)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    drawn = rng.choice(items, size=int(lengths.sum()), p=popularity / popularity.sum())
    frame = pd.DataFrame(
        {
            "user": np.repeat(np.arange(users), lengths).astype(str),
            "item": drawn.astype(str),
            "timestamp": np.concatenate([np.arange(n) for n in lengths]),
        }
    )
    path = write_dataset(workdir / "synthetic", *encode(RawData(frame)), {"name": "synthetic-20k-12k"})
    start = time.perf_counter()
    train_encoder(workdir / "memory-run", "sasrec", str(path), SHARED | OURS["sasrec"], {"epochs": 1})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak, "interactions": len(frame), "seconds": time.perf_counter() - start}))


def run_memory(workdir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--memory-child", "--run", str(workdir)], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"memory run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_ours(model: str, workdir: Path, epochs: int) -> dict:
    run = workdir / f"ours-{model}"
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--child", model, "--run", str(run), "--epochs", str(epochs)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"training {model} failed:\n{result.stderr[-3000:]}")
    child = json.loads(result.stdout.strip().splitlines()[-1])
    metrics = child["metrics"]
    return {
        "name": f"llmrec {model}",
        "hr@10": metrics["test"]["hr@10"],
        "ndcg@10": metrics["test"]["ndcg@10"],
        "mrr@10": metrics["test"]["mrr@10"],
        "c20_hr@1": child["c20_hr@1"],
        "seconds_per_epoch": metrics["seconds_per_epoch"],
        "epochs": metrics["epochs"],
        "best_epoch": metrics["best_epoch"],
        "wall_seconds": metrics["wall_seconds"],
        "cpu_seconds": child["cpu_seconds"],
        "process_seconds": time.perf_counter() - start,
        "peak_mib": child["peak_mib"],
    }


def run_peer(model: str, workdir: Path, epochs: int) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            str(HERE / "recbole_peer.py"),
            "--model",
            PEERS[model],
            "--out",
            str(workdir / f"recbole-{model}"),
            "--epochs",
            str(epochs),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"RecBole {PEERS[model]} failed:\n{result.stderr[-3000:]}")
    peer = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "name": f"RecBole {PEERS[model]}",
        "hr@10": peer["test"]["hr@10"],
        "ndcg@10": peer["test"]["ndcg@10"],
        "mrr@10": peer["test"]["mrr@10"],
        "c20_hr@1": None,
        "seconds_per_epoch": peer["seconds_per_epoch"],
        "epochs": peer["epochs"],
        "best_epoch": peer["best_epoch"],
        "wall_seconds": peer["wall_seconds"],
        "cpu_seconds": peer["cpu_seconds"],
        "peak_mib": peer["peak_mib"],
    }


def _cell(value: object, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def load_kept(path: Path) -> dict:
    """Rows and the memory figure kept from earlier invocations (``{"rows": {name: row}, "memory": ...}``)."""
    if path.exists():
        return json.loads(path.read_text())
    return {"rows": {}, "memory": None}


def keep(path: Path, kept: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(kept, indent=2) + "\n")
    tmp.replace(path)


def ordered(rows: dict) -> list[dict]:
    def key(row: dict) -> tuple[int, int]:
        model = row["model"]
        return (ORDER.index(model) if model in ORDER else len(ORDER), row["name"].startswith("RecBole"))

    return sorted(rows.values(), key=key)


def render(rows: list[dict], memory: dict | None) -> str:
    header = (
        "| model | HR@10 | NDCG@10 | MRR@10 | c20 HR@1 | s/epoch | epochs (best) | wall to converge | CPU time "
        "| peak MiB |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [header]
    for row in rows:
        lines.append(
            f"| {row['name']} | {_cell(row['hr@10'])} | {_cell(row['ndcg@10'])} | {_cell(row['mrr@10'])} | "
            f"{_cell(row['c20_hr@1'])} | {_cell(row['seconds_per_epoch'], 1)} | "
            f"{row['epochs']} ({row['best_epoch']}) | "
            f"{row['wall_seconds'] / 60:.1f} min | {row['cpu_seconds'] / 60:.1f} min | {row['peak_mib']:.0f} |"
        )
    ratios = []
    by_name = {row["name"]: row for row in rows}
    for ours, peer in PEERS.items():
        a, b = by_name.get(f"llmrec {ours}"), by_name.get(f"RecBole {peer}")
        if a and b:
            ratios.append(
                f"- {peer}: NDCG@10 {a['ndcg@10']:.4f} vs {b['ndcg@10']:.4f} "
                f"({a['ndcg@10'] / b['ndcg@10']:.2f}x); wall time to converge {a['wall_seconds'] / 60:.1f} vs "
                f"{b['wall_seconds'] / 60:.1f} min ({a['wall_seconds'] / b['wall_seconds']:.2f}x of RecBole's); "
                f"CPU time {a['cpu_seconds'] / 60:.1f} vs {b['cpu_seconds'] / 60:.1f} min "
                f"({a['cpu_seconds'] / b['cpu_seconds']:.2f}x)"
            )
    runs = sorted({(row["measured"], row["command"], row["cpus"]) for row in rows})
    measured = [f"- {date} on {cpus} by `{command}`" for date, command, cpus in runs]
    return "\n".join(
        [
            "# Encoder benchmark: ML-100K, leave-one-out, full ranking",
            "",
            "Each of our models was trained beside its RecBole peer in one invocation, one model at a time; rows "
            "measured:",
            "",
            *measured,
            "",
            "Same sizes on both sides: hidden 64, max length 50, full-softmax cross-entropy, early stopping on "
            "validation NDCG@10 (patience 10); SASRec and BERT4Rec 2 layers, GRU4Rec 1; dropout as RecBole's "
            "defaults per model; our SASRec trains with stride 1 (every target with its full context). Test "
            "metrics of the best validation epoch, 943 users, history not masked. c20: LLaRA's 20-candidate "
            "protocol (target + 19 unseen items, fixed per split); RecBole has no such protocol. Wall time to "
            "converge includes every epoch until early stopping and its validation; CPU time is the training "
            "process's user + system time over the same span (ours also counts loading the dataset), the figure "
            "that stays put when other work shares the machine.",
            "",
            *lines,
            "",
            *(["Side by side:", "", *ratios, ""] if ratios else []),
            *(
                [
                    f"Memory: one SASRec epoch (same sizes) on a synthetic dataset of 20,000 users, 12,000 items and "
                    f"{memory['interactions']:,} interactions peaked at {memory['peak_mib']:.0f} MiB resident "
                    f"({memory['seconds']:.0f} s, including building the dataset's split; measured "
                    f"{memory['measured']}).",
                    "",
                ]
                if memory
                else []
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(ORDER))
    parser.add_argument("--peers", default="recbole", choices=["recbole", "none"])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--kept", type=Path, default=HERE / "results.json", help="Rows kept between invocations.")
    parser.add_argument("--memory", default="yes", choices=["yes", "no"], help="Run the 20k x 12k memory check.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        train_child(args.child, args.run, args.epochs)
        return
    if args.memory_child:
        memory_child(args.run)
        return
    kept = load_kept(args.kept)
    command = "python eval/encoders/benchmark.py " + " ".join(sys.argv[1:])
    stamp = {
        "measured": f"{datetime.now(UTC):%Y-%m-%d}",
        "command": command.strip(),
        "cpus": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})",
    }
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-") as tmp:
        for model in args.models.split(","):
            measured = [run_ours(model, Path(tmp), args.epochs)]
            print(f"done: llmrec {model}", file=sys.stderr)
            if args.peers == "recbole" and model in PEERS:
                measured.append(run_peer(model, Path(tmp), args.epochs))
                print(f"done: RecBole {PEERS[model]}", file=sys.stderr)
            for row in measured:
                kept["rows"][row["name"]] = row | stamp | {"model": model}
            keep(args.kept, kept)
            args.out.write_text(render(ordered(kept["rows"]), kept["memory"]) + "\n")  # each pair as it lands
        if args.memory == "yes":
            kept["memory"] = run_memory(Path(tmp)) | {"measured": stamp["measured"]}
            keep(args.kept, kept)
    text = render(ordered(kept["rows"]), kept["memory"])
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
