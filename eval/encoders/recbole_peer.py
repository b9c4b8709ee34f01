"""Train a RecBole 1.2.1 sequential model on exactly llmrec's ML-100K leave-one-out split, as a benchmark peer.

    .venv/bin/python eval/encoders/recbole_peer.py --model SASRec --out /tmp/peer [--epochs 300] [--threads 2]

RecBole is a peer to compare against, not a dependency: this script builds its own throwaway venv (default
``$LLMREC_HOME/peers/recbole-venv``, reused while its stamp matches), exports our dataset as RecBole atomic files
and runs a small child script in that venv. It prints one JSON line: test/valid metrics (``hr@10``, ``ndcg@10``,
``mrr@10``), epochs, best epoch, seconds per epoch, wall seconds to converge and peak memory.

Identical split: our interactions are already ordered per user by time, ties in source order. RecBole sorts
by its time field itself, so the exported timestamp is each row's global index: RecBole's order, and so its
leave-one-out split (last item test, second-last valid), is then exactly ours. RecBole's full-sort evaluation
of sequential models does not mask history items (``FullSortEvalDataLoader.collate_fn`` passes no history for
them), which is our default too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

PEER_PACKAGES = [
    "torch==2.13.0",
    "numpy<2",
    "scipy",
    "pandas<3",
    "tqdm",
    "colorlog==4.7.2",
    "colorama==0.4.4",
    "scikit-learn",
    "pyyaml",
    "tensorboard",
    "thop",
    "tabulate",
    "plotly",
    "texttable",
    "psutil",
]
DATASET = "llmrec-ml-100k"

CHILD = r"""
import json, resource, sys, time
import numpy as np
import torch

for alias, kind in (("float", float), ("int", int), ("bool", bool), ("long", int)):
    if not hasattr(np, alias):
        setattr(np, alias, kind)
_load = torch.load
torch.load = lambda *a, **k: _load(*a, **{**k, "weights_only": False})  # RecBole reloads full checkpoints

from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, get_trainer, init_seed

spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
config = Config(model=spec["model"], dataset=spec["dataset"], config_dict=spec["config"])
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train, valid, test = data_preparation(config, dataset)
model = get_model(config["model"])(config, train.dataset).to(config["device"])
trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
start = time.perf_counter()
_, valid_result = trainer.fit(train, valid, saved=True, show_progress=False)
wall = time.perf_counter() - start
test_result = trainer.evaluate(test, load_best_model=True, show_progress=False)
epochs = len(trainer.train_loss_dict)

def ours(result):
    keys = {"hr@10": "recall@10", "ndcg@10": "ndcg@10", "mrr@10": "mrr@10"}
    return {key: float(result[theirs]) for key, theirs in keys.items()}

print(json.dumps({
    "model": spec["model"], "test": ours(test_result), "valid": ours(valid_result), "epochs": epochs,
    "best_epoch": epochs - trainer.cur_step, "seconds_per_epoch": wall / max(epochs, 1), "wall_seconds": wall,
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "users_evaluated": int(len(test.dataset.inter_feat)) if hasattr(test, "dataset") else None,
    "items": int(dataset.item_num - 1), "mask_history": False, "config": spec["config"],
}))
"""


def _home() -> Path:
    return Path(os.environ.get("LLMREC_HOME") or Path.home() / ".cache" / "llmrec")


def ensure_venv(venv: Path) -> Path:
    """Create the peer venv with RecBole and its dependencies once; return its python."""
    python = venv / "bin" / "python"
    stamp = venv / (".stamp-" + hashlib.sha256(json.dumps(PEER_PACKAGES).encode()).hexdigest()[:12])
    if stamp.exists():
        return python
    print(f"recbole_peer: building {venv} (once)", file=sys.stderr)
    subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *PEER_PACKAGES], check=True)
    # RecBole's own requirement list pins ray for hyper-parameter search, which training does not use.
    subprocess.run([*pip, "--no-deps", "recbole==1.2.1"], check=True)
    stamp.touch()
    return python


def export_dataset(data_dir: Path) -> int:
    """Write our ML-100K as ``DATASET.inter`` with row-index timestamps; returns the number of users."""
    from llmrec.data.builtin import load_dataset

    frame = load_dataset("ml-100k").interactions
    folder = data_dir / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{DATASET}.inter", "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for row, (user, item) in enumerate(zip(frame["user_id"].tolist(), frame["item_id"].tolist(), strict=True)):
            f.write(f"{user}\t{item}\t{row}\n")
    return int(frame["user_id"].nunique())


def recbole_config(model: str, out: Path, epochs: int) -> dict:
    config = {
        "data_path": str(out / "data"),
        "checkpoint_dir": str(out / "checkpoints"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Recall", "NDCG", "MRR"],
        "topk": [10],
        "valid_metric": "NDCG@10",
        "hidden_size": 64,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "epochs": epochs,
        "stopping_step": 10,
        "device": "cpu",
        "use_gpu": False,
        "seed": 2020,
        "reproducibility": True,
        "show_progress": False,
        "worker": 0,
    }
    if model == "GRU4Rec":
        config.update({"embedding_size": 64, "num_layers": 1})
    else:
        config["n_layers"] = 2
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description="Train a RecBole peer on llmrec's ML-100K leave-one-out split.")
    parser.add_argument("--model", required=True, choices=["SASRec", "GRU4Rec", "BERT4Rec"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--venv", type=Path, default=_home() / "peers" / "recbole-venv")
    args = parser.parse_args()
    python = ensure_venv(args.venv)
    args.out.mkdir(parents=True, exist_ok=True)
    users = export_dataset(args.out / "data")
    spec = {
        "model": args.model,
        "dataset": DATASET,
        "threads": args.threads,
        "config": recbole_config(args.model, args.out, args.epochs),
    }
    result = subprocess.run([str(python), "-c", CHILD, json.dumps(spec)], capture_output=True, text=True, cwd=args.out)
    if result.returncode != 0:
        raise SystemExit(f"RecBole {args.model} failed:\n{result.stderr[-4000:]}")
    peer = json.loads(result.stdout.strip().splitlines()[-1])
    peer["users"] = users
    print(json.dumps(peer))


if __name__ == "__main__":
    main()
