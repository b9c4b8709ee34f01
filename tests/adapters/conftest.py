"""Fixtures for the adapter tests: a quick SASRec run on ML-100K, small datasets, the bundled SmolLM2."""

from __future__ import annotations

import pytest
import torch

from llmrec.data.dataset import read_dataset, write_dataset


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Small models on one torch thread: on the 2-core machine a second thread makes them several times slower
    whenever another job holds a core (measured: MiniLM over ML-100K 10 s on one thread, 5 to 35 s on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
