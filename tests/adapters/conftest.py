"""Fixtures for the adapter tests: a quick SASRec run on ML-100K, small datasets, the bundled SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from llmrec.data.dataset import RawData, encode, read_dataset, write_dataset

# One epoch of a small SASRec over non-overlapping windows: item embeddings that are trained, in seconds.
ENCODER = {"hidden_size": 32, "max_len": 20, "num_layers": 1, "inner_size": 64}
TRAIN = {"epochs": 1, "batch_size": 256, "stride": 20, "threads": 1}


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Small models on one torch thread: on the 2-core machine a second thread makes them several times slower
    whenever another job holds a core (measured: MiniLM over ML-100K 10 s on one thread, 5 to 35 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def sasrec_run(ml100k, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SASRec run directory trained for one epoch on ML-100K."""
    from llmrec.encoders.train import train_encoder

    threads = torch.get_num_threads()  # the trainer sets its own thread count for the whole process
    run = tmp_path_factory.mktemp("encoder") / "sasrec"
    try:
        train_encoder(run, "sasrec", "ml-100k", ENCODER, TRAIN)
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory):
    """Twelve films, four users: another catalog, with a text attribute."""
    rows = [(f"u{u}", f"m{(u * 3 + t) % 12}", t) for u in range(4) for t in range(6)]
    items = pd.DataFrame(
        {
            "raw_id": [f"m{i}" for i in range(12)],
            "title": [f"Film number {i}" for i in range(12)],
            "genre": ["Drama" if i % 2 else "Comedy" for i in range(12)],
        }
    )
    interactions, catalog, users = encode(RawData(pd.DataFrame(rows, columns=["user", "item", "timestamp"]), items))
    path = write_dataset(tmp_path_factory.mktemp("tiny") / "tiny", interactions, catalog, users, {"name": "tiny"})
    return read_dataset(path)


@pytest.fixture(scope="session")
def ml100k_without_one_user(ml100k, tmp_path_factory: pytest.TempPathFactory):
    """ML-100K minus the interactions of its last user: the same item table, other interaction data."""
    kept = ml100k.interactions[ml100k.interactions["user_id"] < ml100k.num_users]
    path = tmp_path_factory.mktemp("variant") / "ml-100k-variant"
    write_dataset(path, kept, ml100k.items, ml100k.users, {"name": "ml-100k-variant"})
    return read_dataset(path)


@pytest.fixture(scope="session")
def smollm():
    """The bundled SmolLM2 (float32, frozen) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmrec.models.defaults import resolve_model

    path = resolve_model(None)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval().requires_grad_(False)
    return AutoTokenizer.from_pretrained(path), model
