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
split. Each of our models is measured right beside its RecBole peer on the same machine, so a pair's ratios are
side by side.

A full run takes longer than a working session on 2 cores (one RecBole SASRec epoch takes about 2 minutes here and
its run more than an hour), so nothing is lost when an invocation stops. Runs live in ``--work`` (default
``eval/encoders/runs``): a finished run of ours is reused while its settings and llmrec's sources are unchanged
(otherwise retrained), a RecBole run resumes from its last finished epoch, its times summed over the finished epochs
of every invocation (see ``recbole_peer.py``), and a finished one is reused while RecBole's settings are unchanged;
``--fresh`` retrains the named models from scratch. The default ``--work`` is in the repository, and its
``.gitignore`` lets git keep what a later invocation needs (each run's ``row.json``, an unfinished RecBole run's
resume state, deleted when it finishes): committed, a run goes on from a fresh clone on another machine. Every row
is kept in ``eval/encoders/results.json`` (with its date and command) the moment it is measured, ``--models``
measures only the named pairs, and the table in ``eval/encoders/RESULTS.md`` (also printed) is rendered from all
kept rows.
A timed run must have the machine to itself in every invocation it spans.

One seed's test NDCG@10 on 943 users moves by a few thousandths from seed to seed, about the size of the gaps being
compared. ``--seeds N`` (default 3) trains each side N times (ours with seeds 42, 43, ..., RecBole with 2020, 2021,
...) and reports the quality columns as the mean and standard deviation over seeds, and the difference of a pair as
a paired 95% bootstrap interval over the test users (each side's per-user ranks kept, seeds averaged per user).
Only the first seed is timed: it runs alone; the other seeds train two at a time, each process on one core of its
own (``sched_setaffinity``, one thread), and contribute their metrics, not their times.

RecBole's peers are tuned on validation: each setting of ``PEER_BATCHES`` x ``PEER_DROPOUTS`` (and the model's own
default dropout) trains with seed 2020, alone and timed; the best validation NDCG@10 is the peer, its run the
first seed, and its other seeds train at that setting (``--peer-grid no``: RecBole's defaults only).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import queue
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cache, partial
from importlib.metadata import version
from pathlib import Path

import numpy as np

from llmrec.ranking.intervals import PairedInterval, paired_bootstrap, per_user

HERE = Path(__file__).resolve().parent
PACKAGE = (HERE.parents[1] / "llmrec").resolve()
# Regularisation as in RecBole's defaults for each model (properties/model/*.yaml), sizes as in SHARED.
OURS = {
    "sasrec": {"num_layers": 2, "num_heads": 2, "dropout": 0.5, "attn_dropout": 0.5},
    "bert4rec": {"num_layers": 2, "num_heads": 2, "dropout": 0.2, "attn_dropout": 0.2, "mask_prob": 0.2},
    "gru4rec": {"num_layers": 1, "dropout": 0.3},
    "pop": {},
}
PEERS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "bert4rec": "BERT4Rec"}
SHARED = {"hidden_size": 64, "max_len": 50, "loss": "ce"}
# SASRec trains every target with its full 50-item context (stride 1), as RecBole's per-prefix examples do;
# the other models keep their default strides (how each choice was made: TUNING).
TRAIN = {"sasrec": {"stride": 1}}
# How each side's settings were chosen, and on which split: printed under the table. Our settings predate the
# rule that every choice is made on validation; the trials that set them scored test, and are listed as such.
TUNING = [
    "RecBole (every model): train batch and dropout chosen on validation NDCG@10 from the grid below, seed 2020; "
    "everything else RecBole 1.2.1's defaults (Adam, lr 1e-3) at the shared sizes. Test is scored once, for the "
    "chosen setting.",
    "Every row: the epoch is chosen by early stopping on validation NDCG@10 (patience 10).",
    "llmrec sasrec: stride 1 and the pre-LayerNorm block were fixed in development, scoring test NDCG@10 (one "
    "seed); nothing was tuned for this run.",
    "llmrec bert4rec: its defaults were set by trials that scored test NDCG@10 (seed 42, one core): windows 25 "
    "apart 0.0507 vs 5 apart 0.0583 (kept); stride 1, RecBole's every-prefix examples, 0.0574 at five times the "
    "cost per epoch; stride 1 with last-item batches and the output bias, 0.0562; last_mask_prob 0.5, 0.0419 "
    "(0.0394 with the output bias); both options with stride 5, 0.0528. They are disclosed here, not re-made on "
    "validation.",
    "llmrec gru4rec: the unpacked, bias-free GRU and its window layout were changed in development while "
    "comparing with RecBole's test NDCG@10 (one seed); nothing was tuned for this run.",
]
# RecBole's peers are tuned on validation: every train batch and dropout below (and RecBole's own default dropout
# for the model) is trained with seed 2020; the best validation NDCG@10 is the peer's configuration.
PEER_BATCHES = (256, 2048)
PEER_DROPOUTS = (0.2, 0.5)
RECBOLE_DROPOUT = {"SASRec": 0.5, "BERT4Rec": 0.2, "GRU4Rec": 0.3}  # properties/model/*.yaml of RecBole 1.2.1
ORDER = ["sasrec", "bert4rec", "gru4rec", "pop"]
QUALITY = ("hr@10", "ndcg@10", "mrr@10", "c20_hr@1")
OUR_SEED, PEER_SEED = 42, 2020  # each side's default seed: the first of --seeds


ROW_FILE = "row.json"  # in each run directory of --work: the finished run's row and what made it


def settings(model: str, epochs: int, seed: int, threads: int) -> tuple[dict, dict]:
    """The encoder and training settings of one of our runs (``threads`` 0: torch's choice)."""
    encoder = {} if model == "pop" else SHARED | OURS[model]
    return encoder, {"epochs": epochs, "patience": 10, "seed": seed, "threads": threads} | TRAIN.get(model, {})


def train_child(model: str, run: Path, epochs: int, seed: int, threads: int) -> None:
    """Runs inside the child process: train one of our encoders and print its figures as one JSON line."""
    from llmrec.encoders.train import train_encoder
    from llmrec.eval.runner import evaluate_run

    encoder, training = settings(model, epochs, seed, threads)
    cpu = time.process_time()
    metrics = train_encoder(run, model, "ml-100k", encoder, training)
    cpu = time.process_time() - cpu
    test = evaluate_run(run, protocol="full", keep_ranks=True)
    c20 = evaluate_run(run, protocol="c20", keep_ranks=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ranks = {"test_ranks": test["ranks"], "c20_ranks": c20["ranks"], "users": test["users"]}
    figures = {"metrics": metrics, "c20_hr@1": c20["hr@1"], "peak_mib": peak, "cpu_seconds": cpu}
    print(json.dumps(figures | ranks | {"source_files": loaded_sources()}))


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


def _pinned(cpu: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that keeps the child (and its children) on one core, or None to leave it free."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def loaded_sources() -> list[str]:
    """The llmrec source files this process has loaded (relative to the package), for :func:`source_digest`."""
    modules = [module for name, module in list(sys.modules.items()) if name.split(".")[0] == "llmrec"]
    files = {getattr(module, "__file__", None) for module in modules}
    paths = [Path(f).resolve() for f in files if f]
    return sorted(str(path.relative_to(PACKAGE)) for path in paths if path.is_relative_to(PACKAGE))


def source_digest(files: list[str]) -> str:
    """SHA-256 of llmrec source ``files`` as they are now: a kept run of ours is reused only while the code that
    trained and scored it (the files its child process loaded) is unchanged; changes elsewhere in the package keep
    it."""
    digest = hashlib.sha256()
    for name in files:
        path = PACKAGE / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"(gone)") + b"\0")
    return digest.hexdigest()


def _read_row(path: Path, made: dict | None = None) -> dict | None:
    """The row kept in ``path`` (if ``made`` is given, only when it was made the same way), else None."""
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # never written, or cut short by a stop
    if made is not None and kept.get("made") != made:
        return None
    return kept.get("row")


def _read_made(path: Path) -> dict:
    """What made the row kept in ``path`` (empty when there is none)."""
    try:
        return json.loads(path.read_text()).get("made") or {}
    except (OSError, ValueError):
        return {}


def _write_row(path: Path, row: dict, made: dict | None = None) -> None:
    keep(path, {"made": made, "row": row})


def run_ours(
    model: str, workdir: Path, epochs: int, stamp: dict, seed: int = OUR_SEED, cpu: int | None = None
) -> dict:
    """Train one of our encoders in a child process (on core ``cpu`` with one thread, if given); its row.

    The row (with ``stamp``: when, how and where it was measured) is kept in the run directory with what made it
    (settings, pinned or not, llmrec's sources, torch's version) and returned again, without training, while
    those stay the same; otherwise the run is trained afresh.
    """
    run = workdir / f"ours-{model}-{seed}"
    threads = 0 if cpu is None else 1
    encoder, training = settings(model, epochs, seed, threads)
    made = {"model": model, "encoder": encoder, "train": training, "torch": version("torch")}
    files = _read_made(run / ROW_FILE).get("source_files", [])
    made |= {"source_files": files, "sources": source_digest(files)}
    kept = _read_row(run / ROW_FILE, made) if files else None
    if kept is not None:
        print(f"reused: {run} (finished {kept['measured']} with the same settings and code)", file=sys.stderr)
        return kept
    shutil.rmtree(run, ignore_errors=True)
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--child", model, "--run", str(run), "--epochs", str(epochs)]
        + ["--seed", str(seed), "--threads", str(threads)],
        capture_output=True,
        text=True,
        preexec_fn=_pinned(cpu),
    )
    if result.returncode != 0:
        raise SystemExit(f"training {model} failed:\n{result.stderr[-3000:]}")
    child = json.loads(result.stdout.strip().splitlines()[-1])
    metrics = child["metrics"]
    if child["users"] != test_users():
        raise SystemExit(f"{run}: its test users are not the split's, in the split's order")
    row = {
        "name": f"llmrec {model}",
        "seed": seed,
        "valid_ndcg@10": metrics["valid"]["ndcg@10"],
        "hr@10": metrics["test"]["hr@10"],
        "ndcg@10": metrics["test"]["ndcg@10"],
        "mrr@10": metrics["test"]["mrr@10"],
        "c20_hr@1": child["c20_hr@1"],
        "test_ranks": child["test_ranks"],
        "c20_ranks": child["c20_ranks"],
        "train_examples": metrics.get("train_examples"),
        "seconds_per_epoch": metrics["seconds_per_epoch"],
        "epochs": metrics["epochs"],
        "best_epoch": metrics["best_epoch"],
        "wall_seconds": metrics["wall_seconds"],
        "cpu_seconds": child["cpu_seconds"],
        "process_seconds": time.perf_counter() - start,
        "peak_mib": child["peak_mib"],
        **stamp,
    }
    files = child["source_files"]
    _write_row(run / ROW_FILE, row, made | {"source_files": files, "sources": source_digest(files)})
    return row


@cache
def test_users() -> list[int]:
    """The test split's users in its example order: the order of every row's per-user ranks."""
    from llmrec.data.builtin import load_dataset
    from llmrec.data.splits import leave_one_out_split

    return leave_one_out_split(load_dataset("ml-100k")).test.users.tolist()


def peer_grid(model: str) -> list[tuple[int, float]]:
    """The (train batch, dropout) settings RecBole's ``model`` is tried at, RecBole's defaults among them."""
    dropouts = sorted({*PEER_DROPOUTS, RECBOLE_DROPOUT[PEERS[model]]})
    return [(batch, dropout) for batch in PEER_BATCHES for dropout in dropouts]


def run_peer(
    model: str,
    workdir: Path,
    epochs: int,
    stamp: dict,
    seed: int = PEER_SEED,
    cpu: int | None = None,
    batch: int = 2048,
    dropout: float | None = None,
) -> dict:
    """Train RecBole's peer of ``model`` through ``recbole_peer.py`` (on core ``cpu``, if given) at train batch
    ``batch`` and ``dropout`` (None: the model's default); its row.

    The peer resumes a run left in ``workdir`` with the same settings from its last finished epoch, so a RecBole
    run longer than one sitting is measured over several invocations. A finished run's row is kept in its
    directory with what made it (RecBole's settings, threads and packages) and returned again while those stay
    the same; its resume state and checkpoint are then deleted, so only the row stays for git to keep.
    """
    from recbole_peer import PINS, RECBOLE, recbole_config  # beside this script

    dropout = RECBOLE_DROPOUT[PEERS[model]] if dropout is None else dropout
    out = workdir / f"recbole-{model}-{seed}-b{batch}-d{dropout}"
    threads = 2 if cpu is None else 1
    config = recbole_config(PEERS[model], epochs, seed, batch, dropout)
    made = {"model": PEERS[model], "threads": threads, "config": config}
    made["packages"] = [RECBOLE, *PINS]
    kept = _read_row(out / ROW_FILE, made)
    if kept is not None:
        print(f"reused: {out} (finished {kept['measured']} with the same settings)", file=sys.stderr)
        return kept
    result = subprocess.run(
        [sys.executable, str(HERE / "recbole_peer.py"), "--model", PEERS[model], "--resume"]
        + ["--out", str(out), "--epochs", str(epochs), "--seed", str(seed)]
        + ["--threads", str(threads), "--batch", str(batch), "--dropout", str(dropout)],
        capture_output=True,
        text=True,
        preexec_fn=_pinned(cpu),
    )
    if result.returncode != 0:
        raise SystemExit(f"RecBole {PEERS[model]} failed:\n{result.stderr[-3000:]}")
    peer = json.loads(result.stdout.strip().splitlines()[-1])
    finished = _read_row(out / ROW_FILE) if peer["retested"] else None
    if finished is not None:
        print(f"reused: {out} (finished {finished['measured']}, tested again)", file=sys.stderr)
        stamp = {key: finished[key] for key in stamp}
    row = {
        "name": f"RecBole {PEERS[model]}",
        "seed": seed,
        "batch": batch,
        "dropout": dropout,
        "valid_ndcg@10": peer["valid"]["ndcg@10"],
        "hr@10": peer["test"]["hr@10"],
        "ndcg@10": peer["test"]["ndcg@10"],
        "mrr@10": peer["test"]["mrr@10"],
        "c20_hr@1": None,
        "test_ranks": [peer["test_ranks"][str(user)] for user in test_users()],
        "train_examples": {"prefixes": peer["train_examples"]},
        "seconds_per_epoch": peer["seconds_per_epoch"],
        "epochs": peer["epochs"],
        "best_epoch": peer["best_epoch"],
        "wall_seconds": peer["wall_seconds"],
        "cpu_seconds": peer["cpu_seconds"],
        "peak_mib": peer["peak_mib"],
        "resumed_after": peer["resumed_after"],
        "anomaly_detection": peer["anomaly_detection"],
        **stamp,
    }
    _write_row(out / ROW_FILE, row, made)
    (out / "resume.pth").unlink(missing_ok=True)  # finished: the row is all that is reused
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return row


def on_free_cores(jobs: list[Callable[[int], dict]]) -> list[dict]:
    """Run ``jobs`` (each called with the core it may use) two at a time, each alone on one core; their rows."""
    free: queue.Queue[int] = queue.Queue()
    for cpu in sorted(os.sched_getaffinity(0))[:2]:
        free.put(cpu)

    def run(job: Callable[[int], dict]) -> dict:
        cpu = free.get()
        try:
            return job(cpu)
        finally:
            free.put(cpu)

    with ThreadPoolExecutor(max_workers=free.qsize()) as pool:
        return list(pool.map(run, jobs))


def over_seeds(timed: dict, rows: list[dict]) -> dict:
    """``timed`` (the first seed's row: its times stand) with each quality column the mean over ``rows``."""
    per_seed = [
        {"seed": r["seed"], "measured": r["measured"], **{k: r[k] for k in (*QUALITY, "valid_ndcg@10") if k in r}}
        for r in rows
    ]
    out = timed | {"seeds": len(rows), "per_seed": per_seed, "timed_measured": timed["measured"]}
    for key in ("test_ranks", "c20_ranks"):
        if all(key in r for r in rows):
            out[f"{key}_per_seed"] = [r[key] for r in rows]
    for key in QUALITY:
        values = [r[key] for r in rows if r[key] is not None]
        if values:
            out[key] = statistics.fmean(values)
            out[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def seed_ranks(row: dict, key: str = "test_ranks") -> np.ndarray | None:
    """A row's per-user ranks, ``[seeds, users]`` (one line per seed), or None for a row kept without them."""
    ranks = row.get(f"{key}_per_seed") or ([row[key]] if row.get(key) else None)
    return None if ranks is None else np.asarray(ranks)


def paired(a: dict, b: dict, metric: str = "ndcg@10") -> PairedInterval | None:
    """Row ``a`` minus row ``b`` on ``metric`` over the same test users (each side's seeds averaged per user)."""
    ra, rb = seed_ranks(a), seed_ranks(b)
    if ra is None or rb is None:
        return None
    return paired_bootstrap(per_user(ra, metric), per_user(rb, metric))


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
    from llmrec.runs import atomic_write_text

    atomic_write_text(path, json.dumps(kept, indent=2) + "\n")


def ordered(rows: dict) -> list[dict]:
    def key(row: dict) -> tuple[int, int]:
        model = row["model"]
        return (ORDER.index(model) if model in ORDER else len(ORDER), row["name"].startswith("RecBole"))

    return sorted(rows.values(), key=key)


def _quality(row: dict, key: str) -> str:
    """A quality cell: the value, or mean ± standard deviation when the row spans several seeds."""
    if row.get("seeds", 1) > 1 and row.get(f"{key}_sd") is not None:
        return f"{row[key]:.4f} ± {row[f'{key}_sd']:.4f}"
    return _cell(row[key])


def render_grids(grids: dict) -> list[str]:
    """Each RecBole peer's tuning on validation: every setting tried, the chosen one in bold."""
    lines = []
    for model, tried in grids.items():
        best = max(tried, key=lambda r: r["valid_ndcg@10"])
        lines += [
            f"RecBole {PEERS[model]}, seed {PEER_SEED}, tuned on validation NDCG@10 (test not looked at):",
            "",
            "| train batch | dropout | valid NDCG@10 | epochs (best) | wall to converge |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in tried:
            mark = "**" if r is best else ""
            lines.append(
                f"| {mark}{r['batch']}{mark} | {mark}{r['dropout']}{mark} | {mark}{r['valid_ndcg@10']:.4f}{mark} | "
                f"{r['epochs']} ({r['best_epoch']}) | {r['wall_seconds'] / 60:.1f} min |"
            )
        lines.append("")
    return lines


def render_setups(rows: list[dict]) -> list[str]:
    """How each side trains: optimiser, batch, normalisation, examples per epoch, dropout."""
    from llmrec.encoders.run import TrainConfig

    defaults = TrainConfig()  # our runs train at its lr, clipping and batch (settings() overrides none of them)
    lines = []
    for row in rows:
        model, examples = row["model"], row.get("train_examples")
        if model == "pop" or not examples:
            continue
        if row["name"].startswith("RecBole"):
            norm = "no normalisation" if model == "gru4rec" else "post-LayerNorm blocks"
            lines.append(
                f"- {row['name']}: Adam (lr 1e-3, no clipping), train batch {row['batch']} prefixes, {norm}, "
                f"dropout {row['dropout']}; {examples['prefixes']:,} training examples per epoch (every prefix of "
                "each training sequence, its next item the target)."
            )
        else:
            norm = {"sasrec": "pre-LayerNorm blocks", "bert4rec": "pre-LayerNorm blocks after an input LayerNorm"}
            training = TRAIN.get(model, {})
            stride = f"stride {training['stride']}" if "stride" in training else "the default stride"
            lines.append(
                f"- {row['name']}: AdamW (lr {defaults.lr:g}, gradient norm clipped at "
                f"{defaults.grad_clip:g}), batches of {defaults.batch_size} windows, "
                f"{norm.get(model, 'no normalisation')}, dropout {OURS[model]['dropout']}; {examples['windows']:,} "
                f"windows ({stride}) holding {examples['targets']:,} targets per epoch, "
                f"{examples['batches']:,} batches."
            )
    return ["Each side's training:", "", *lines, ""] if lines else []


def render(rows: list[dict], memory: dict | None, grids: dict | None = None) -> str:
    header = (
        "| model | HR@10 | NDCG@10 | MRR@10 | c20 HR@1 | seeds | s/epoch | epochs (best) | wall to converge "
        "| CPU time | peak MiB |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    )
    lines = [header]
    for row in rows:
        lines.append(
            f"| {row['name']} | {_quality(row, 'hr@10')} | {_quality(row, 'ndcg@10')} | {_quality(row, 'mrr@10')} | "
            f"{_quality(row, 'c20_hr@1')} | {row.get('seeds', 1)} | {_cell(row['seconds_per_epoch'], 1)} | "
            f"{row['epochs']} ({row['best_epoch']}) | "
            f"{row['wall_seconds'] / 60:.1f} min | {row['cpu_seconds'] / 60:.1f} min | {row['peak_mib']:.0f} |"
        )
    ratios = []
    by_name = {row["name"]: row for row in rows}
    for ours, peer in PEERS.items():
        a, b = by_name.get(f"llmrec {ours}"), by_name.get(f"RecBole {peer}")
        if a and b:
            diff = paired(a, b)
            verdict = (
                ""
                if diff is None
                else f", paired difference {diff.describe()} over {diff.users} users "
                f"({'beats' if diff.beats else 'does not beat' if diff.high > 0 else 'is beaten by'} RecBole's)"
            )
            ratios.append(
                f"- {peer}: NDCG@10 {_quality(a, 'ndcg@10')} vs {_quality(b, 'ndcg@10')} "
                f"({a['ndcg@10'] / b['ndcg@10']:.2f}x of the means{verdict}); wall time to converge "
                f"{a['wall_seconds'] / 60:.1f} vs {b['wall_seconds'] / 60:.1f} min "
                f"({a['wall_seconds'] / b['wall_seconds']:.2f}x of RecBole's); "
                f"CPU time {a['cpu_seconds'] / 60:.1f} vs {b['cpu_seconds'] / 60:.1f} min "
                f"({a['cpu_seconds'] / b['cpu_seconds']:.2f}x)"
            )
    resumed = [
        f"- {row['name']} was stopped and resumed after epoch{'s' if len(row['resumed_after']) > 1 else ''} "
        f"{', '.join(map(str, row['resumed_after']))}; its times are the sums over its finished epochs."
        for row in rows
        if row.get("resumed_after")
    ]
    runs = sorted({(row["measured"], row["command"], row["cpus"]) for row in rows})
    measured = [f"- {date} on {cpus} by `{command}`" for date, command, cpus in runs]
    return "\n".join(
        [
            "# Encoder benchmark: ML-100K, leave-one-out, full ranking",
            "",
            "Each of our models was trained beside its RecBole peer, one run at a time with the machine to itself "
            "(a run stopped by the end of a working session continues in a later invocation: see the notes under "
            "the table); rows measured:",
            "",
            *measured,
            "",
            "Same sizes on both sides: hidden 64, max length 50, full-softmax cross-entropy, early stopping on "
            "validation NDCG@10 (patience 10); SASRec and BERT4Rec 2 layers, GRU4Rec 1; our dropout as RecBole's "
            "defaults per model, RecBole's tuned on validation (below); our SASRec trains with stride 1. Test "
            "metrics of the best validation epoch, 943 users, history not masked; with several seeds, the mean "
            "± standard deviation over seeds, and the times are the first seed's (it trains alone; the others "
            "train two at a time, one core each). c20: LLaRA's 20-candidate "
            "protocol (target + 19 unseen items, fixed per split); RecBole has no such protocol. Wall time to "
            "converge includes every epoch until early stopping and its validation; CPU time is the training "
            "process's user + system time over the same span (ours also counts loading the dataset). Both grow "
            "when other work shares the cores (CPU time too: the cores' caches and boost are shared), so the timed "
            "runs are run with the machine to itself.",
            "",
            *lines,
            "",
            *([*resumed, ""] if resumed else []),
            "How each row's settings were chosen:",
            "",
            *[f"- {line}" for line in TUNING],
            "",
            *render_grids(grids or {}),
            *render_setups(rows),
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
    parser.add_argument("--seeds", type=int, default=3, help="Seeds per model and side (quality: mean ± sd).")
    parser.add_argument(
        "--peer-grid",
        default="yes",
        choices=["yes", "no"],
        help="Tune each RecBole peer's train batch and dropout on validation (no: RecBole's defaults).",
    )
    parser.add_argument(
        "--work", type=Path, default=HERE / "runs", help="Where runs are kept and resumed (default: %(default)s)."
    )
    parser.add_argument("--fresh", action="store_true", help="Retrain the named models' runs from scratch.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=OUR_SEED, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        train_child(args.child, args.run, args.epochs, args.seed, args.threads)
        return
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
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
    work = args.work.expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)

    def land(row: dict, model: str) -> None:  # kept at once: a stopped invocation keeps what it measured
        kept["rows"][row["name"]] = row | {"model": model}
        keep(args.kept, kept)
        args.out.write_text(render(ordered(kept["rows"]), kept["memory"], kept.get("grids")) + "\n")

    for model in args.models.split(","):
        peer = args.peers == "recbole" and model in PEERS
        seeds = args.seeds if model != "pop" else 1  # pop has nothing random
        if args.fresh:
            for old in [*work.glob(f"ours-{model}-*"), *work.glob(f"recbole-{model}-*")]:
                shutil.rmtree(old)
        # With one seed each row lands as soon as it is measured (our run is minutes, RecBole's may span sessions);
        # with several, only the finished mean lands: a stop part-way leaves the kept mean as it was (the finished
        # runs are in --work and reused next time).
        measured = [run_ours(model, work, args.epochs, stamp)]
        print(f"done: llmrec {model}", file=sys.stderr)
        if seeds == 1:
            land(measured[0], model)
        chosen: dict = {}
        if peer:
            # Every setting of the grid trains alone (timed); the chosen one's run is the peer's first seed.
            settings_ = peer_grid(model) if args.peer_grid == "yes" else [(2048, None)]
            tried = [run_peer(model, work, args.epochs, stamp, batch=b, dropout=d) for b, d in settings_]
            best = max(tried, key=lambda r: r["valid_ndcg@10"])
            chosen = {"batch": best["batch"], "dropout": best["dropout"]}
            kept.setdefault("grids", {})[model] = [
                {k: r[k] for k in ("batch", "dropout", "valid_ndcg@10", "epochs", "best_epoch", "wall_seconds")}
                for r in tried
            ]
            measured.append(best)
            print(f"done: RecBole {PEERS[model]} (chosen on validation: {chosen})", file=sys.stderr)
        if seeds > 1:
            extra = range(1, seeds)
            jobs = [partial(run_ours, model, work, args.epochs, stamp, OUR_SEED + i) for i in extra]
            peer_jobs = [partial(run_peer, model, work, args.epochs, stamp, PEER_SEED + i, **chosen) for i in extra]
            jobs += peer_jobs if peer else []
            rows = on_free_cores(jobs)
            for j, side in enumerate(measured):
                runs = [side, *(r for r in rows if r["name"] == side["name"])]
                measured[j] = over_seeds(side, runs) | stamp  # the mean is this invocation's
            print(f"done: {model}, {seeds} seeds", file=sys.stderr)
        for row in measured:
            land(row, model)
    if args.memory == "yes":
        with tempfile.TemporaryDirectory(prefix="llmrec-bench-memory-") as tmp:
            kept["memory"] = run_memory(Path(tmp)) | {"measured": stamp["measured"]}
        keep(args.kept, kept)
    text = render(ordered(kept["rows"]), kept["memory"], kept.get("grids"))
    args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
