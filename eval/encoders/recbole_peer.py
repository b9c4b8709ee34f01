"""Train a RecBole 1.2.1 sequential model on exactly llmrec's ML-100K leave-one-out split, as a benchmark peer.

    .venv/bin/python eval/encoders/recbole_peer.py --model SASRec --out DIR [--epochs 300] [--seed 2020] \\
        [--threads 2] [--venv V] [--resume]

``--model`` is SASRec, GRU4Rec or BERT4Rec. RecBole is a peer to compare against, never a dependency of llmrec:
this script builds its own throwaway venv (``--venv``, default ``$LLMREC_HOME/peers/recbole-venv``, and
``~/.cache/llmrec/peers/recbole-venv`` when LLMREC_HOME is unset) with ``recbole==1.2.1``, the CPU build of
``torch==2.13.0`` and ``numpy<2`` (RecBole 1.2.1 aliases ``np.float_`` and friends, gone in numpy 2), and reuses
it while its stamp file matches. It then runs this same file again inside that venv (``--child``, which imports
only the standard library, RecBole and torch); RecBole's code and data never enter the repository.

Identical split. Our interactions are ordered per user by time, ties in source order. RecBole re-sorts by
(user, time field) before it builds its per-prefix examples, and ML-100K has many equal timestamps within a
user, so the real timestamps could order ties differently. The exported ``timestamp`` is therefore each row's
global index in our table: RecBole's order is then exactly ours, and so is its leave-one-out split (last item
test, second-last validation, every earlier prefix a training example). The child dumps RecBole's validation
and test examples (user, target, the history its model sees) and the parent checks them against
``leave_one_out_split`` before printing anything, with the user and item counts (943 users; 1682 items plus
RecBole's padding id 0).

Protocol. Full ranking over the whole catalog, HR@10 (RecBole's Recall@10: one target per user), NDCG@10 and
MRR@10. RecBole's full-sort evaluation does not mask a sequential model's history items: for sequential models
``FullSortEvalDataLoader.collate_fn`` returns ``None`` as the history index, so ``_full_sort_batch_eval`` masks
only the padding item. That is llmrec's default (``mask_history`` false) too; the child checks it at run time
and reports it as ``mask_history``.

Resume. A RecBole SASRec epoch takes minutes here and a run hours, longer than a working session, so after every
finished epoch (its validation and early-stopping step included) the child saves ``--out/resume.pth``: weights,
optimiser, early-stopping state, the best checkpoint's path, every random stream (the training loader's
shuffling, torch's for dropout, numpy's, Python's for BERT4Rec's masking) and the wall and CPU seconds so far.
``--resume`` continues from it when ``--out`` last ran with the same model, threads, configuration and inputs
(the exported interactions, the venv's packages; otherwise it starts afresh), so the run goes on as if never
stopped (checked: a GRU4Rec run killed after its second epoch and resumed logs the uninterrupted run's losses and
validation scores); the epoch cut short by the stop is not counted, and the times are the sums over the finished
epochs of every process. ``resumed_after`` in the output lists the epochs after which it was resumed, and
``retested`` says that the run had finished before and was only tested again.

Output: one JSON line on stdout with the model, test and validation metrics (validation of the best epoch),
epochs run, best epoch (1-based), seconds per epoch (training, validation and checkpointing, as ours), training
seconds per epoch, wall and CPU seconds to converge (``Trainer.fit`` until early stopping), peak memory (max RSS of the
training process, MiB), the split checks and the RecBole configuration (our overrides and the resolved model
and training settings). RecBole's logs, TensorBoard files and checkpoints go under ``--out``; progress lines
(RecBole's log) go to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

MODELS = ("SASRec", "GRU4Rec", "BERT4Rec")
DATASET = "llmrec-ml-100k"  # no RecBole preset has this name, so only our overrides and RecBole's defaults apply
RECBOLE = "recbole==1.2.1"
PINS = ["torch==2.13.0", "numpy<2", "pandas<3"]
# RecBole 1.2.1's requirements without ray (it imports ray only for hyper-parameter tuning): the fallback when
# ray<=2.6.3 has no wheel for this Python.
RECBOLE_DEPS = [
    "scipy>=1.6.0",
    "tqdm>=4.48.2",
    "colorlog==4.7.2",
    "colorama==0.4.4",
    "scikit-learn>=0.23.2",
    "pyyaml>=5.1.0",
    "tensorboard>=2.5.0",
    "thop>=0.1.1.post2207130030",
    "tabulate>=0.8.10",
    "plotly>=4.0.0",
    "texttable>=0.9.0",
    "psutil>=5.9.0",
]
STAMP = ".llmrec-peer-stamp"
STATE = "resume.pth"  # written after every finished epoch: what --resume continues from
MAX_LEN = 50
DROPOUTS = {  # the dropout settings of each model's yaml in RecBole 1.2.1 (properties/model/)
    "SASRec": ("hidden_dropout_prob", "attn_dropout_prob"),
    "BERT4Rec": ("hidden_dropout_prob", "attn_dropout_prob"),
    "GRU4Rec": ("dropout_prob",),
}
# Settings beyond the model's own yaml that the JSON reports as RecBole resolved them.
TRAINING_KEYS = (
    "learner",
    "learning_rate",
    "weight_decay",
    "train_batch_size",
    "eval_batch_size",
    "clip_grad_norm",
    "epochs",
    "stopping_step",
    "eval_step",
    "valid_metric",
    "MAX_ITEM_LIST_LENGTH",
    "train_neg_sample_args",
    "eval_args",
    "metric_decimal_place",
    "seed",
    "shuffle",
)


# ---------------------------------------------------------------------------------------------------------------
# Parent: runs in llmrec's venv.


def default_venv() -> Path:
    """``$LLMREC_HOME/peers/recbole-venv``, or ``~/.cache/llmrec/peers/recbole-venv`` when LLMREC_HOME is unset."""
    home = Path(os.environ.get("LLMREC_HOME") or Path.home() / ".cache" / "llmrec").expanduser()
    return home / "peers" / "recbole-venv"


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    return subprocess.run(command, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)


def _check(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode != 0:
        raise SystemExit(f"recbole_peer: {what} failed:\n{result.stderr[-3000:]}")


def ensure_venv(venv: Path) -> Path:
    """Build the peer venv once (reused while its stamp matches what this script installs); return its python."""
    python = venv / "bin" / "python"
    wanted = json.dumps({"python": "3.11", "packages": [RECBOLE, *PINS]})
    stamp = venv / STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    if venv.exists() and any(venv.iterdir()) and not (venv / "pyvenv.cfg").exists():
        raise SystemExit(f"recbole_peer: {venv} exists and is not a venv; pass another --venv")
    print(f"recbole_peer: building the RecBole venv {venv} (once)", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    _check(subprocess.run(["python3.11", "-m", "venv", "--clear", str(venv)], capture_output=True, text=True), "venv")
    # torch first and alone, so the resolver settles on the CPU wheel before anything can ask for another build.
    _check(_pip(python, PINS[0]), f"pip install {PINS[0]}")
    full = _pip(python, RECBOLE, *PINS)
    if full.returncode != 0:
        fallback = f"{RECBOLE} with its dependencies failed (ray?); installing it --no-deps, its other dependencies"
        print(f"recbole_peer: {fallback} explicitly:\n{full.stderr[-1000:]}", file=sys.stderr)
        _check(_pip(python, *PINS, *RECBOLE_DEPS), "pip install of RecBole's dependencies")
        _check(_pip(python, "--no-deps", RECBOLE), f"pip install --no-deps {RECBOLE}")
    probe = subprocess.run(
        [str(python), "-c", "import torch, recbole; print(torch.__version__, torch.version.cuda)"],
        capture_output=True,
        text=True,
    )
    _check(probe, "importing torch and recbole in the peer venv")
    if probe.stdout.split()[-1] != "None":
        raise SystemExit(f"recbole_peer: the peer venv got a CUDA torch ({probe.stdout.strip()}); remove {venv}")
    stamp.write_text(wanted)
    return python


def export_dataset(data_dir: Path) -> Any:
    """Write our ML-100K as RecBole atomic file ``DATASET.inter`` (row-index timestamps); return the Dataset."""
    import numpy as np
    import pandas as pd

    from llmrec.data.builtin import load_dataset

    dataset = load_dataset("ml-100k")
    frame = dataset.interactions
    folder = data_dir / DATASET
    folder.mkdir(parents=True, exist_ok=True)
    atomic = pd.DataFrame(
        {
            "user_id:token": frame["user_id"].to_numpy(),
            "item_id:token": frame["item_id"].to_numpy(),
            "timestamp:float": np.arange(len(frame), dtype=np.int64),
        }
    )
    atomic.to_csv(folder / f"{DATASET}.inter", sep="\t", index=False)
    return dataset


def recbole_config(
    model: str, epochs: int, seed: int = 2020, batch: int | None = None, dropout: float | None = None
) -> dict[str, Any]:
    """Our overrides of RecBole's defaults: same sizes, split and protocol as llmrec's encoder benchmark, and
    ``batch`` (``train_batch_size``) and ``dropout`` (every dropout of the model) when given, else RecBole's
    defaults (2048; the model's yaml). Paths are relative to ``--out`` (the child's working directory), so a
    resume state holds no absolute path and a run moved to another checkout still continues."""
    config: dict[str, Any] = {
        "data_path": "data",
        "checkpoint_dir": "checkpoints",
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": MAX_LEN,
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
        "seed": seed,
        "reproducibility": True,
        "show_progress": False,
        "worker": 0,
    }
    if model == "GRU4Rec":
        config.update({"embedding_size": 64, "num_layers": 1})
    else:
        config["n_layers"] = 2
    if batch is not None:
        config["train_batch_size"] = batch
    if dropout is not None:
        config.update(dict.fromkeys(DROPOUTS[model], dropout))
    return config


def resumable(out: Path, spec: dict[str, Any]) -> bool:
    """Whether ``out`` holds a resume state of a run with ``spec``'s model, threads, settings and inputs (the
    exported data, the venv's packages). This script's own code is not compared: after changing how the child
    trains, pass the benchmark's ``--fresh``."""
    previous = out / "spec.json"
    if not (out / STATE).exists() or not previous.exists():
        return False
    before = json.loads(previous.read_text())
    same = all(before.get(key) == spec[key] for key in ("model", "dataset", "threads", "config", "inputs"))
    if not same:
        print(f"recbole_peer: {out} holds a run with other settings; starting afresh", file=sys.stderr)
    return same


def check_split(dataset: Any, dump: dict[str, Any], train_examples: int) -> dict[str, Any]:
    """Compare RecBole's examples with ``leave_one_out_split``; raise SystemExit on any difference."""
    from llmrec.data.splits import leave_one_out_split

    split = leave_one_out_split(dataset)
    problems = []
    for name in ("valid", "test"):
        ours = split.eval_set(name)
        expected = {
            int(u): (int(t), [int(i) for i in split.history(int(u), int(c))[-MAX_LEN:]])
            for u, c, t in zip(ours.users, ours.cutoffs, ours.targets, strict=True)
        }
        theirs = {int(u): (int(t), [int(i) for i in h]) for u, t, h in dump[name]}
        if len(dump[name]) != len(theirs):
            problems.append(f"{name}: RecBole has several examples for one user")
        if theirs != expected:
            differ = sorted(u for u in expected.keys() | theirs.keys() if expected.get(u) != theirs.get(u))
            problems.append(f"{name}: {len(differ)} users differ (first {differ[:5]})")
    ours_train = int(sum(max(int(n) - 1, 0) for n in split.train_len))
    if train_examples != ours_train:
        problems.append(f"train: RecBole has {train_examples} prefix examples, our split {ours_train}")
    if dump["items"] != dataset.num_items + 1:
        problems.append(f"items: RecBole has {dump['items']} ids (with padding), we have {dataset.num_items} + 1")
    if problems:
        raise SystemExit("recbole_peer: RecBole's split is not ours:\n" + "\n".join(problems))
    return {"split_identical": True, "train_examples": train_examples}


def main() -> None:
    parser = argparse.ArgumentParser(description="Train a RecBole peer on llmrec's ML-100K leave-one-out split.")
    parser.add_argument("--model", choices=MODELS, help="RecBole model to train")
    parser.add_argument("--out", type=Path, help="working directory: atomic files, logs, checkpoints")
    parser.add_argument("--epochs", type=int, default=300, help="at most this many epochs (default 300)")
    parser.add_argument("--seed", type=int, default=2020, help="RecBole's seed (default 2020, its own default)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--batch", type=int, default=None, help="train_batch_size (default: RecBole's, 2048)")
    parser.add_argument("--dropout", type=float, default=None, help="every dropout of the model (default: its yaml)")
    parser.add_argument("--venv", type=Path, default=None, help=f"peer venv (default {default_venv()})")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last finished epoch, if it has one with the same settings",
    )
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if not args.model or not args.out:
        parser.error("--model and --out are required")
    if args.epochs < 1 or args.threads < 1 or (args.batch is not None and args.batch < 1):
        parser.error("--epochs, --threads and --batch must be at least 1")
    if args.dropout is not None and not 0 <= args.dropout < 1:
        parser.error("--dropout must be in [0, 1)")
    venv = (args.venv or default_venv()).expanduser()
    python = ensure_venv(venv)
    out = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    dataset = export_dataset(out / "data")
    inter = out / "data" / DATASET / f"{DATASET}.inter"
    spec = {
        "model": args.model,
        "dataset": DATASET,
        "threads": args.threads,
        "config": recbole_config(args.model, args.epochs, args.seed, args.batch, args.dropout),
        # What else the training depends on: the exported interactions and the venv's RecBole and torch.
        "inputs": {"data": hashlib.sha256(inter.read_bytes()).hexdigest(), "venv": (venv / STAMP).read_text()},
        "dump": "recbole-split.json",  # paths relative to --out, the child's working directory
        "state": STATE,
    }
    resume = args.resume and resumable(out, spec)
    if not resume:  # a fresh run: nothing of an earlier one may leak in
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / STATE).unlink(missing_ok=True)
    spec["resume"] = resume
    (out / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    threads = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--child", str(out / "spec.json")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=out,
        env=env,
    )
    if result.returncode != 0:
        raise SystemExit(f"recbole_peer: RecBole {args.model} failed (exit {result.returncode}); see stderr above")
    peer = json.loads(result.stdout.strip().splitlines()[-1])
    dump = json.loads((out / spec["dump"]).read_text())
    peer.update(check_split(dataset, dump, peer.pop("train_examples")))
    print(json.dumps(peer))


# ---------------------------------------------------------------------------------------------------------------
# Child: runs in the peer venv; imports only the standard library, torch and RecBole.


def _patch_torch_load() -> None:
    """torch>=2.6 loads with weights_only=True by default; RecBole's checkpoints hold its config, so reload fully."""
    import torch

    load = torch.load

    def full_load(*args: Any, **kwargs: Any) -> Any:
        kwargs["weights_only"] = False
        return load(*args, **kwargs)

    torch.load = full_load


def _ours(result: dict[str, float]) -> dict[str, float]:
    """RecBole's metric names to ours: Recall@10 is HR@10 with one target per user."""
    return {
        "hr@10": float(result["recall@10"]),
        "ndcg@10": float(result["ndcg@10"]),
        "mrr@10": float(result["mrr@10"]),
    }


def _examples(data: Any, built: Any) -> list[list[Any]]:
    """Each evaluation example as ``[user token, target token, history tokens the model sees]``."""
    feat = data.inter_feat
    users = built.id2token(built.uid_field, feat[built.uid_field].numpy())
    targets = built.id2token(built.iid_field, feat[built.iid_field].numpy())
    lists = feat[built.item_id_list_field].numpy()
    lengths = feat[built.item_list_length_field].numpy()
    return [
        [int(u), int(t), [int(i) for i in built.id2token(built.iid_field, row[:n])]]
        for u, t, row, n in zip(users, targets, lists, lengths, strict=True)
    ]


def _target_ranks(model: Any, data: Any, built: Any) -> dict[str, int]:
    """Each evaluated user's 0-based rank of the target among every item, ties counted against the target (as
    llmrec ranks), keyed by user token: the per-user values of a paired comparison."""
    import torch

    model.eval()
    ranks: dict[str, int] = {}
    with torch.no_grad():
        for interaction, _history, _rows, targets in data:
            scores = model.full_sort_predict(interaction).view(len(targets), -1)[:, 1:]  # drop padding id 0
            rows = torch.arange(len(targets))
            above = (scores >= scores[rows, targets - 1][:, None]).sum(1) - 1
            users = built.id2token(built.uid_field, interaction[built.uid_field].numpy())
            ranks.update({str(u): int(r) for u, r in zip(users, above.tolist(), strict=True)})
    return ranks


def _save_state(path: Path, epoch: int, trainer: Any, train_data: Any, done: dict[str, Any]) -> None:
    """Everything needed to continue after ``epoch`` as if never stopped: weights, optimiser, early-stopping
    state, every random stream (the loader's shuffling, dropout, Python's for BERT4Rec's masking) and the
    times so far."""
    import random

    import numpy as np
    import torch

    state = {
        "epoch": epoch,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "cur_step": trainer.cur_step,
        "best_valid_score": trainer.best_valid_score,
        "best_valid_result": trainer.best_valid_result,
        "saved_model_file": trainer.saved_model_file,
        "rng": {
            "loader": train_data.generator.get_state(),
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(),
            "python": random.getstate(),
        },
        "done": done,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _resume(path: Path, trainer: Any, train_data: Any) -> dict[str, Any]:
    """Load ``path`` into ``trainer`` (fit then starts at the next epoch); the times and scores so far."""
    import random

    import numpy as np
    import torch

    state = torch.load(path)
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.start_epoch = state["epoch"] + 1
    trainer.cur_step = state["cur_step"]
    trainer.best_valid_score = state["best_valid_score"]
    trainer.best_valid_result = state["best_valid_result"]
    trainer.saved_model_file = state["saved_model_file"]
    rng = state["rng"]
    train_data.generator.set_state(rng["loader"])
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    print(f"recbole_peer: continuing after epoch {state['epoch'] + 1}", file=sys.stderr)
    return state["done"]


def child(spec_file: Path) -> None:
    """Train and test one RecBole model as ``spec_file`` says; print one JSON line."""
    import resource

    import recbole
    import torch
    import yaml
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    spec = json.loads(spec_file.read_text())
    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value overrides from the command line
    # RecBole 1.2.1 predates pandas 2.2 and torch 2.4: their deprecation warnings are noise here.
    warnings.filterwarnings("ignore", category=FutureWarning)
    _patch_torch_load()
    torch.set_num_threads(spec["threads"])
    config = Config(model=spec["model"], dataset=spec["dataset"], config_dict=spec["config"])
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    built = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, built)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    # Importing any of RecBole 1.2.1's sequential models runs sine.py, whose module level turns on autograd's
    # anomaly detection for the whole process: a debugging mode (every op records its stack, every backward is
    # checked for NaN) that about doubles a SASRec epoch here and changes no result. No RecBole user wants it,
    # so the peer trains without it.
    torch.autograd.set_detect_anomaly(False)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)

    state_file = Path(spec["state"])
    done = {"train_seconds": [], "valid_scores": [], "wall": 0.0, "cpu": 0.0, "peak_mib": 0.0, "resumed_after": []}
    if spec["resume"]:
        done = _resume(state_file, trainer, train_data)
    train_seconds: list[float] = done["train_seconds"]
    valid_scores: list[float] = done["valid_scores"]
    train_epoch, valid_epoch = trainer._train_epoch, trainer._valid_epoch

    def timed_train_epoch(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        loss = train_epoch(*args, **kwargs)
        train_seconds.append(time.perf_counter() - start)
        return loss

    def recorded_valid_epoch(*args: Any, **kwargs: Any) -> Any:
        score, result = valid_epoch(*args, **kwargs)
        valid_scores.append(float(score))
        return score, result

    trainer._train_epoch, trainer._valid_epoch = timed_train_epoch, recorded_valid_epoch
    start, cpu = time.perf_counter(), time.process_time()

    def elapsed() -> dict[str, float]:
        """Wall and CPU seconds of every finished epoch so far, this process's and earlier ones'."""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "wall": done["wall"] + time.perf_counter() - start,
            "cpu": done["cpu"] + time.process_time() - cpu,
            "peak_mib": max(done["peak_mib"], peak),
        }

    def save_state(epoch: int, _score: float) -> None:  # RecBole's end-of-epoch callback, after early stopping
        _save_state(state_file, epoch, trainer, train_data, done | elapsed())

    # A state saved after the last epoch (stopped early, or the epoch limit) has nothing left to train; fit would
    # even overwrite the best checkpoint with the last weights when start_epoch >= epochs.
    retested = trainer.cur_step > trainer.stopping_step or trainer.start_epoch >= trainer.epochs
    if retested:
        valid_result, totals = trainer.best_valid_result, done  # finished earlier: only tested again
    else:
        if trainer.start_epoch > 0:
            done["resumed_after"].append(trainer.start_epoch)
        fit = trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=save_state)
        valid_result, totals = fit[1], elapsed()
    wall, cpu, peak_mib = totals["wall"], totals["cpu"], totals["peak_mib"]
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test_ranks = _target_ranks(trainer.model, test_data, built)

    # After training, so that drawing a batch cannot shift any random stream: a sequential model's full-sort
    # batch carries no history index, so nothing but padding is masked.
    history_index = next(iter(test_data))[1]
    epochs = len(train_seconds)
    # RecBole's early stopping takes a tie as the new best (value >= best), on scores rounded to 4 decimals.
    best_epoch = len(valid_scores) - valid_scores[::-1].index(max(valid_scores))
    if best_epoch != epochs - trainer.cur_step:
        raise SystemExit(f"best epoch {best_epoch} disagrees with RecBole's early stopping state")
    Path(spec["dump"]).write_text(
        json.dumps(
            {
                "items": int(built.item_num),
                "valid": _examples(valid_data._dataset, built),
                "test": _examples(test_data._dataset, built),
            }
        )
    )
    package = Path(recbole.__file__).parent
    model_yaml = yaml.safe_load((package / "properties" / "model" / f"{spec['model']}.yaml").read_text()) or {}
    resolved = {key: config[key] for key in [*model_yaml, *TRAINING_KEYS]}
    print(
        json.dumps(
            {
                "model": spec["model"],
                "test": _ours(test_result),
                "test_ranks": test_ranks,
                "valid": _ours(valid_result),
                "epochs": epochs,
                "best_epoch": best_epoch,
                "seconds_per_epoch": wall / epochs,
                "train_seconds_per_epoch": sum(train_seconds) / epochs,
                "wall_seconds": wall,
                "cpu_seconds": cpu,
                "peak_mib": peak_mib,
                "resumed_after": done["resumed_after"],
                "retested": retested,
                "mask_history": history_index is not None,
                "users_evaluated": len(test_data._dataset),
                "valid_users": len(valid_data._dataset),
                "items": int(built.item_num),
                "train_examples": len(train_data._dataset),
                "threads": torch.get_num_threads(),
                "anomaly_detection": torch.is_anomaly_enabled(),
                "recbole_version": recbole.__version__,
                "torch_version": torch.__version__,
                "config": spec["config"],
                "resolved_config": resolved,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
