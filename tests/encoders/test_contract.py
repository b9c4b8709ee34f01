"""One contract test over every registered encoder: shapes, save/load, training step, padding."""

import pytest
import torch

from llmrec.encoders import ENCODERS, build_encoder
from llmrec.encoders.base import LOSSES, Batch, load_encoder, next_item_loss, save_encoder
from llmrec.errors import LlmrecError

NUM_ITEMS = 30
SEQS = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 5], [0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]])
TARGETS = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 6], [0, 0, 0, 4, 5, 6, 7, 8], [2, 3, 4, 5, 6, 7, 8, 9]])


def make(name, **overrides):
    torch.manual_seed(0)
    config = {"max_len": 8} | overrides
    model = build_encoder(name, NUM_ITEMS, config)
    if not model.trainable:
        model.fit([s[s > 0].numpy() for s in SEQS])
    return model.eval()


def batch_for(model, loss):
    targets = SEQS.clone() if model.objective == "cloze" else TARGETS
    negatives = None
    if loss != "ce":
        negatives = torch.randint(1, NUM_ITEMS + 1, (*targets.shape, 1 if loss == "bce" else 4))
    return Batch(SEQS, targets, negatives, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_shapes_and_scores(name):
    model = make(name)
    with torch.no_grad():
        state = model.encode(SEQS)
        items = model.item_embeddings()
        full = model.score(SEQS)
        candidates = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
        some = model.score(SEQS, candidates)
    assert state.shape[0] == 3 and items.shape == (NUM_ITEMS + 1, state.shape[1])
    assert full.shape == (3, NUM_ITEMS + 1) and torch.isneginf(full[:, 0]).all()
    assert torch.isfinite(full[:, 1:]).all()
    assert some.shape == (3, 3)
    torch.testing.assert_close(some, full.gather(1, candidates))


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_save_load_round_trip_is_bit_identical(name, tmp_path):
    model = make(name)
    save_encoder(model, tmp_path / "m")
    again = load_encoder(tmp_path / "m")
    assert type(again) is type(model) and again.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    with torch.no_grad():
        assert torch.equal(model.score(SEQS), again.score(SEQS))


@pytest.mark.parametrize("name", sorted(n for n in ENCODERS if ENCODERS[n].model_cls.trainable))
@pytest.mark.parametrize("loss", LOSSES)
def test_one_training_step_changes_parameters(name, loss):
    model = make(name, loss=loss, num_negatives=4).train()
    before = {k: v.clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    value = model(batch_for(model, loss))
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    optimizer.step()
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert changed, "no parameter changed"
    assert any("item_embedding" in k for k in changed)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_padding_never_leaks_into_scores(name):
    model = make(name)
    with torch.no_grad():
        reference = model.score(SEQS)
        # 1. the padding embedding row does not matter
        if hasattr(model, "item_embedding"):
            model.item_embedding.weight[0].normal_()
            torch.testing.assert_close(model.score(SEQS), reference)
        # 2. a sequence scores the same alone and in a batch, and with fewer padding columns
        alone = model.score(SEQS[:1])
        torch.testing.assert_close(alone, reference[:1])
        trimmed = model.score(SEQS[1:2, 3:])
        torch.testing.assert_close(trimmed, reference[1:2])
        # 3. a single item with maximal padding gives finite scores
        assert torch.isfinite(model.score(torch.tensor([[0] * 7 + [1]]))[:, 1:]).all()


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_scores_read_only_the_last_max_len_items(name):
    """Whatever a model's training windows, it ranks from the last max_len items, as it is evaluated."""
    model = make(name)
    longer = torch.cat([torch.tensor([[11, 12, 13]]), SEQS[2:]], dim=1)  # (1, max_len + 3)
    with torch.no_grad():
        torch.testing.assert_close(model.score(longer), model.score(SEQS[2:]))


def test_stacked_gru_layers_keep_padding_out():
    model = make("gru4rec", num_layers=2)
    with torch.no_grad():
        reference = model.score(SEQS)
        model.item_embedding.weight[0].normal_()
        torch.testing.assert_close(model.score(SEQS), reference)
        torch.testing.assert_close(model.score(SEQS[1:2, 3:]), reference[1:2])


@pytest.mark.parametrize("name", sorted(n for n in ENCODERS if ENCODERS[n].model_cls.trainable))
def test_last_positions_only_match_the_full_states_and_loss(name):
    model = make(name)  # eval mode: no dropout, so both paths compute the same function
    with torch.no_grad():
        full = model.sequence_states(SEQS)
        for last in (1, 3):
            torch.testing.assert_close(model.sequence_states(SEQS, last=last), full[:, -last:])
        if model.objective == "next":
            # Windows training only their last two positions: the loss over the tail equals the full-state loss.
            targets = TARGETS.clone()
            targets[:, :-2] = 0
            batch = Batch(SEQS, targets)
            assert batch.target_span() == 2
            torch.testing.assert_close(model.loss(batch), next_item_loss(model, full, batch))


def test_unknown_encoder_lists_registered_ones():
    with pytest.raises(LlmrecError, match="registered encoders: bert4rec, gru4rec, pop, sasrec"):
        build_encoder("caser", 10)
    with pytest.raises(LlmrecError, match="no field"):
        build_encoder("sasrec", 10, {"hidden": 3})
    with pytest.raises(LlmrecError, match="loss"):
        build_encoder("sasrec", 10, {"loss": "hinge"})


def test_corrupted_checkpoint_is_a_clear_error(tmp_path):
    save_encoder(make("sasrec"), tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(LlmrecError, match="corrupted"):
        load_encoder(tmp_path / "m")
