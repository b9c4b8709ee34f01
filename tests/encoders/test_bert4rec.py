"""BERT4Rec's own parts beyond the shared contract: the output bias and the last-item-only windows."""

import pytest
import torch
import torch.nn.functional as F

from llmrec.encoders import build_encoder
from llmrec.encoders.base import LOSSES, Batch, next_item_loss
from llmrec.errors import LlmrecError

NUM_ITEMS = 30
SEQS = torch.tensor([[0, 0, 0, 0, 0, 3, 9, 5], [0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8]])


def make(**overrides):
    torch.manual_seed(0)
    return build_encoder("bert4rec", NUM_ITEMS, {"max_len": 8} | overrides).eval()


def test_output_bias_enters_every_score_and_the_loss():
    model = make(output_bias=True)
    with torch.no_grad():
        model.output_bias.normal_()
        state = model.encode(SEQS)
        expected = state @ model.item_embeddings().T + model.output_bias  # (B, N+1)
        full = model.score(SEQS)
        candidates = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
        some = model.score(SEQS, candidates)
        torch.testing.assert_close(full[:, 1:], expected[:, 1:])
        torch.testing.assert_close(some, expected.gather(1, candidates))

        targets = torch.zeros_like(SEQS)
        targets[:, -1] = torch.tensor([4, 8, 9])
        states = model.sequence_states(SEQS)
        loss = next_item_loss(model, states, Batch(SEQS, targets))
        logits = states[:, -1] @ model.item_embeddings().T + model.output_bias
        logits[:, 0] = float("-inf")
        torch.testing.assert_close(loss, F.cross_entropy(logits, targets[:, -1]))

    plain = make()  # the default: no bias
    assert plain.item_bias() is None and "output_bias" not in plain.state_dict()


def test_last_mask_prob_one_masks_only_each_windows_last_item():
    model = make(last_mask_prob=1.0, mask_prob=0.9)  # eval mode: no dropout, the masking is the only draw
    batch = Batch(SEQS, SEQS.clone(), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        loss = model.loss(batch)
        inputs = SEQS.clone()
        inputs[:, -1] = model.mask_token
        targets = torch.zeros_like(SEQS)
        targets[:, -1] = SEQS[:, -1]
        expected = next_item_loss(model, model.sequence_states(inputs), Batch(inputs, targets))
    torch.testing.assert_close(loss, expected)


def test_last_mask_prob_zero_keeps_the_cloze_draws():
    """Without last-item windows the loss is the plain cloze loss: it differs from the last-item one."""
    model = make(last_mask_prob=0.0, mask_prob=0.9)
    only_last = make(last_mask_prob=1.0, mask_prob=0.9)
    with torch.no_grad():
        cloze = model.loss(Batch(SEQS, SEQS.clone(), generator=torch.Generator().manual_seed(0)))
        last = only_last.loss(Batch(SEQS, SEQS.clone(), generator=torch.Generator().manual_seed(0)))
    assert torch.isfinite(cloze) and not torch.isclose(cloze, last)


@pytest.mark.parametrize("bad", [{"mask_prob": 1.5}, {"last_mask_prob": -0.1}])
def test_probabilities_outside_zero_one_are_rejected(bad):
    with pytest.raises(LlmrecError, match="between 0 and 1"):
        make(**bad)


@pytest.mark.parametrize("loss", LOSSES)
def test_output_bias_is_trained_by_every_loss(loss):
    model = make(output_bias=True, loss=loss, num_negatives=4).train()
    negatives = None if loss == "ce" else torch.randint(1, NUM_ITEMS + 1, (*SEQS.shape, 1 if loss == "bce" else 4))
    value = model(Batch(SEQS, SEQS.clone(), negatives, torch.Generator().manual_seed(0)))
    value.backward()
    assert torch.isfinite(value) and model.output_bias.grad is not None
    assert model.output_bias.grad[1:].abs().sum() > 0
