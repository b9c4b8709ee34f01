"""Item representations on ML-100K: an encoder run's item embeddings, cached MiniLM text vectors, both."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from llmrec.adapters import catalog_fingerprint, item_representation, item_texts
from llmrec.encoders.run import load_best
from llmrec.errors import LlmrecError


def test_id_vectors_are_the_best_checkpoints_item_embeddings(ml100k, sasrec_run):
    table = item_representation("id", ml100k, encoder_run=sasrec_run)
    expected = load_best(sasrec_run).item_embeddings().detach()
    assert table.vectors.shape == (ml100k.num_items + 1, 32) and table.vectors.dtype == torch.float32
    assert not table.vectors.requires_grad
    assert torch.equal(table.vectors[0], torch.zeros(32))
    assert torch.equal(table.vectors[1:], expected[1:])
    assert table.dims == {"id": 32} and table.num_items == ml100k.num_items
    assert table.fingerprint == catalog_fingerprint(ml100k) and table.encoder_run == str(sasrec_run)


def test_item_text_is_title_then_attributes(ml100k):
    texts = item_texts(ml100k)
    assert len(texts) == ml100k.num_items
    assert texts[0] == "Toy Story; release year: 1995; class: Animation Children's Comedy"


def test_text_vectors_are_cached_per_dataset(ml100k, tiny_dataset, llmrec_home):
    cache = llmrec_home / "embeddings"
    first = item_representation("text", ml100k)
    assert first.vectors.shape == (ml100k.num_items + 1, 384) and first.dims == {"text": 384}
    assert torch.equal(first.vectors[0], torch.zeros(384))
    # MiniLM's pipeline ends in a Normalize module: every item vector has unit length.
    torch.testing.assert_close(first.vectors[1:].norm(dim=1), torch.ones(ml100k.num_items))
    (file,) = cache.glob("ml-100k-*.safetensors")

    # The second call reads the file: a marked file comes back as written, and no other file appears.
    original = load_file(file)["vectors"]
    marked = original.clone()
    marked[1] = 7.0
    save_file({"vectors": marked}, str(file))
    try:
        assert torch.equal(item_representation("text", ml100k).vectors, marked)
    finally:
        save_file({"vectors": original}, str(file))
    assert torch.equal(item_representation("text", ml100k).vectors, first.vectors)

    other = item_representation("text", tiny_dataset)
    assert other.vectors.shape == (13, 384) and other.fingerprint != first.fingerprint
    assert sorted(p.name.split("-")[0] for p in cache.glob("*.safetensors")) == ["ml", "tiny"]


def test_an_unreadable_cache_file_is_recomputed(tiny_dataset, llmrec_home):
    first = item_representation("text", tiny_dataset)
    (file,) = (llmrec_home / "embeddings").glob("tiny-*.safetensors")
    file.write_bytes(b"truncated")
    assert torch.equal(item_representation("text", tiny_dataset).vectors, first.vectors)
    assert torch.equal(load_file(file)["vectors"], first.vectors)


def test_hybrid_concatenates_id_then_text(ml100k, sasrec_run):
    table = item_representation("hybrid", ml100k, encoder_run=sasrec_run)
    ids = item_representation("id", ml100k, encoder_run=sasrec_run)
    text = item_representation("text", ml100k)
    assert table.dims == {"id": 32, "text": 384} and table.dim == 416
    assert torch.equal(table.vectors, torch.cat([ids.vectors, text.vectors], dim=1))
    description = json.loads(json.dumps(table.describe()))
    assert description["kind"] == "hybrid" and description["fingerprint"] == catalog_fingerprint(ml100k)
    assert description["embedder"].endswith("model") and description["encoder_run"] == str(sasrec_run)


def test_an_encoder_run_from_another_dataset_is_refused(sasrec_run, tiny_dataset, ml100k_without_one_user, ml100k):
    with pytest.raises(LlmrecError, match=r"encoder trained on another dataset \(ml-100k: 1,682 items"):
        item_representation("id", tiny_dataset, encoder_run=sasrec_run)
    # Same items under the same ids, other interactions: the catalog matches, the run's data does not.
    assert catalog_fingerprint(ml100k_without_one_user) == catalog_fingerprint(ml100k)
    with pytest.raises(LlmrecError, match="another dataset.*pass the dataset it was trained on"):
        item_representation("hybrid", ml100k_without_one_user, encoder_run=sasrec_run)


def test_bad_arguments_are_clear_errors(ml100k, tiny_dataset, tmp_path):
    with pytest.raises(LlmrecError, match="unknown item representation 'ids'; choose one of id, text, hybrid"):
        item_representation("ids", ml100k)
    with pytest.raises(LlmrecError, match="'id' needs an encoder run"):
        item_representation("id", ml100k)
    with pytest.raises(LlmrecError, match="no such encoder run"):
        item_representation("id", ml100k, encoder_run=tmp_path / "missing")
    with pytest.raises(LlmrecError, match="not a run directory"):
        item_representation("id", ml100k, encoder_run=tmp_path)
    with pytest.raises(LlmrecError, match="cannot load the text embedder"):
        item_representation("text", tiny_dataset, embedder="nobody/no-such-embedder")


def test_a_baseline_without_item_embeddings_is_refused(ml100k, tmp_path):
    from llmrec.encoders.train import train_encoder

    train_encoder(tmp_path / "pop", "pop", "ml-100k")
    with pytest.raises(LlmrecError, match="pop learns no item embeddings"):
        item_representation("id", ml100k, encoder_run=tmp_path / "pop")
