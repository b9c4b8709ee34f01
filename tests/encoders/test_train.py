"""Training into a run directory: early stopping, checkpoints, exact resume after SIGKILL, CLI, accelerate."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from llmrec.encoders.train import train_encoder
from llmrec.errors import LlmrecError
from llmrec.runs import best_checkpoint

SMALL = {"hidden_size": 32, "max_len": 20}


# Cloze training gets fewer targets per step (a share of the items is masked), so BERT4Rec needs more steps.
TRAIN = {
    "sasrec": {"epochs": 15, "patience": 3, "batch_size": 16},
    "gru4rec": {"epochs": 15, "patience": 3, "batch_size": 16},
    "bert4rec": {"epochs": 40, "patience": 8, "batch_size": 16, "lr": 3e-3, "stride": 2},
}


@pytest.mark.parametrize("model", sorted(TRAIN))
def test_training_learns_the_walk_pattern(model, walk_dataset, tmp_path):
    train = TRAIN[model]
    metrics = train_encoder(tmp_path / "run", model, str(walk_dataset), SMALL, train)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.json", "log.jsonl", "checkpoints/last.pt", "checkpoints/best/encoder.json"):
        assert (run / name).exists(), name
    assert metrics["test"]["protocol"] == "full" and metrics["test"]["mask_history"] is False
    # 90% of steps go to the next item: a trained model ranks it near the top, far above chance (10/80).
    assert metrics["test"]["hr@10"] > 0.6, metrics["test"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == metrics["epochs"] and metrics["best_epoch"] <= metrics["epochs"]
    examples = metrics["train_examples"]  # what one epoch trains on, kept beside the scores
    assert examples == json.loads((run / "metrics.json").read_text())["train_examples"]
    assert 0 < examples["batches"] <= examples["windows"] <= examples["targets"]


def test_pop_baseline(walk_dataset, tmp_path):
    metrics = train_encoder(tmp_path / "pop", "pop", str(walk_dataset))
    assert metrics["epochs"] == 0 and 0.0 < metrics["test"]["hr@10"] < 0.6


def test_resume_after_sigkill_matches_uninterrupted_run(walk_dataset, tmp_path, llmrec_cli):
    args = ["encoder", "train", "--dataset", str(walk_dataset), "--model", "sasrec", "--epochs", "4", "--seed", "7"]
    config = tmp_path / "c.yaml"
    config.write_text("encoder:\n  hidden_size: 32\n  max_len: 20\ntrain:\n  batch_size: 8\n  patience: 10\n")
    llmrec_cli(*args, "--config", str(config), "--out", str(tmp_path / "straight"))

    interrupted = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmrec", *args, "--config", str(config), "--out", str(interrupted)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = interrupted / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 1):
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (interrupted / "metrics.json").exists()
    llmrec_cli(*args, "--config", str(config), "--out", str(interrupted), "--resume")

    straight = load_file(best_checkpoint(tmp_path / "straight") / "model.safetensors")
    resumed = load_file(best_checkpoint(interrupted) / "model.safetensors")
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert (straight[key] == resumed[key]).all(), key
    a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    b = json.loads((interrupted / "metrics.json").read_text())
    assert a["test"] == b["test"] and a["best_epoch"] == b["best_epoch"]
    straight_log = (tmp_path / "straight" / "log.jsonl").read_text().splitlines()
    resumed_log = (interrupted / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in resumed_log] == [1, 2, 3, 4]
    assert [json.loads(line)["loss"] for line in resumed_log] == [json.loads(line)["loss"] for line in straight_log]

    again = llmrec_cli(*args, "--config", str(config), "--out", str(interrupted), "--resume", check=False)
    assert again.returncode == 1 and "already finished" in again.stderr


def test_cli_train_recommend_eval(walk_dataset, tmp_path, llmrec_here):
    run = tmp_path / "run"
    out = llmrec_here(
        "encoder",
        "train",
        "--dataset",
        str(walk_dataset),
        "--model",
        "gru4rec",
        "--out",
        str(run),
        "--epochs",
        "3",
        "--json",
    )
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    assert metrics["model"] == "gru4rec" and "ndcg@10" in metrics["test"]
    rec = json.loads(
        llmrec_here("encoder", "recommend", str(run), "--user", "u3", "-k", "5", "--json").stdout.splitlines()[-1]
    )
    assert len(rec["recommendations"]) == 5 and all(r["title"].startswith("Item ") for r in rec["recommendations"])
    for protocol in ("full", "c20", "sampled-10"):
        result = json.loads(llmrec_here("eval", str(run), "--protocol", protocol, "--json").stdout.splitlines()[-1])
        assert result["protocol"] == protocol and result["split"] == "test" and "hr@1" in result
    assert (walk_dataset / "splits").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "caser"], "registered encoders"),
        (["--model", "sasrec", "--loss", "hinge"], "loss"),
        (["--model", "sasrec", "--epochs", "0"], "at least 1"),
        (["--model", "sasrec", "--holdout", "-1"], "holdout must be >= 0"),
    ],
)
def test_cli_bad_input(walk_dataset, tmp_path, llmrec_here, args, message):
    result = llmrec_here(
        "encoder", "train", "--dataset", str(walk_dataset), "--out", str(tmp_path / "r"), *args, check=False
    )
    assert result.returncode == 1 and message in result.stderr


def test_holdout_leaves_each_users_last_training_items_out(walk_dataset, tmp_path, llmrec_here):
    from llmrec.data.dataset import read_dataset
    from llmrec.data.splits import leave_one_out_split

    lengths = [len(s) for s in leave_one_out_split(read_dataset(walk_dataset)).train_sequences()[1:]]
    train = {"epochs": 1, "batch_size": 16, "stride": 1}
    full = train_encoder(tmp_path / "full", "sasrec", str(walk_dataset), SMALL, train)["train_examples"]
    cut = train_encoder(tmp_path / "cut", "sasrec", str(walk_dataset), SMALL, {**train, "holdout": 20})
    # a next-item model trains every position after the first; each user keeps at least one item
    assert full["targets"] == sum(n - 1 for n in lengths)
    assert cut["train_examples"]["targets"] == sum(max(n - 20, 1) - 1 for n in lengths) < full["targets"]
    # the cut run still ranks its validation and test users after their whole training history
    assert cut["valid"]["examples"] == cut["test"]["examples"] == len(lengths)
    llmrec_here("encoder", "train", "--dataset", str(walk_dataset), "--model", "pop", "--holdout", "3", "--out",
                str(tmp_path / "pop"))  # fmt: skip
    assert "holdout: 3" in (tmp_path / "pop" / "config.yaml").read_text()


def test_resume_without_checkpoint_and_existing_run(walk_dataset, tmp_path):
    with pytest.raises(LlmrecError, match="not a run directory"):
        train_encoder(tmp_path / "nothing", resume=True)
    train_encoder(tmp_path / "r", "pop", str(walk_dataset))
    with pytest.raises(LlmrecError, match="already exists"):
        train_encoder(tmp_path / "r", "pop", str(walk_dataset))


def test_accelerate_two_processes(walk_dataset, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    result = subprocess.run(
        [
            launcher,
            "launch",
            "--multi_gpu",  # on a machine without GPUs: torchrun processes on CPU (gloo); --cpu would run just one
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "llmrec",
            "encoder",
            "train",
            "--dataset",
            str(walk_dataset),
            "--model",
            "sasrec",
            "--out",
            str(tmp_path / "ddp"),
            "--epochs",
            "8",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["test"]["hr@10"] > 0.6


def test_users_too_short_for_the_split_are_named(tmp_path, llmrec_cli):
    import pandas as pd

    from llmrec.data.dataset import RawData, encode, write_dataset

    rows = [("long", f"i{t}", t) for t in range(6)] + [("s1", "i1", 0), ("s1", "i2", 1), ("s2", "i3", 0)]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    path = write_dataset(tmp_path / "d", *encode(RawData(frame)), {"name": "d"})
    result = llmrec_cli("encoder", "train", "--dataset", str(path), "--model", "pop", "--out", str(tmp_path / "r"))
    assert "2 users have fewer than 3 interactions (e.g. s1, s2)" in result.stderr


@pytest.mark.parametrize("stride", [1, 2])
def test_every_batch_trains_about_as_many_targets(stride):
    """Users' earliest windows (a target at every position) hold 40% of ML-100K's targets at stride 1; batched
    like the others, those targets would weigh dozens of times less in a loss averaged per batch."""
    import numpy as np
    import torch

    from llmrec.data.builtin import load_dataset
    from llmrec.data.splits import leave_one_out_split
    from llmrec.encoders.batching import epoch_batches, pool_batch_sizes
    from llmrec.encoders.windows import training_windows

    split = leave_one_out_split(load_dataset("ml-100k"))
    _, targets = training_windows(split.train_sequences(), 50, stride)
    spans = 50 - (targets > 0).argmax(1)
    pools = [np.flatnonzero(spans <= stride), np.flatnonzero(spans > stride)]
    sizes = pool_batch_sizes(pools, targets, 128)
    assert sizes[0] == 128 and sizes[1] < 128 / 10
    batches = epoch_batches(pools, sizes, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(len(targets)))  # every window once
    earliest = np.zeros(len(targets), dtype=bool)
    earliest[pools[1]] = True
    counts: list[list[int]] = [[], []]
    for batch in batches:
        index = batch.numpy()
        assert earliest[index].all() or not earliest[index].any()  # pools never mix
        counts[int(earliest[index[0]])].append(int((targets[index] > 0).sum()))
    means = [sum(c) / len(c) for c in counts]
    assert 0.8 < means[1] / means[0] < 1.25  # a batch of earliest windows trains as many targets as another


@pytest.mark.parametrize(
    ("model", "stride", "expected"),
    [("sasrec", 0, (2, 50)), ("bert4rec", 0, (5, 50)), ("gru4rec", 0, (2, 51)), ("gru4rec", 10, (10, 59))],
)
def test_training_layout_gives_every_target_its_context(model, stride, expected):
    """Causal windows of max_len give each target >= max_len - stride items; a recurrent model's longer windows
    give each >= max_len, whatever the stride, as RecBole's per-prefix examples do."""
    import numpy as np

    from llmrec.encoders import build_encoder
    from llmrec.encoders.batching import training_layout
    from llmrec.encoders.windows import training_windows

    encoder = build_encoder(model, 100, {"max_len": 50})
    assert training_layout(encoder, stride) == expected
    if encoder.objective != "next":
        return
    stride, window = expected
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 101, size=n) for n in (3, 49, 50, 51, 120, 333)]
    contexts = []
    for sequence in sequences:
        inputs, targets = training_windows([sequence], window, stride)
        assert (targets > 0).sum() == len(sequence) - 1  # every target exactly once
        # Windows come latest first; the last, the user's earliest, trains every position from the first item.
        seen = (inputs[:-1] > 0).cumsum(1)  # items read up to each position
        contexts.extend(seen[targets[:-1] > 0].tolist())
    assert min(contexts) == (50 if encoder.any_length else 50 - stride + 1)
