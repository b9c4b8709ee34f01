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
        torch.testing.assert_close(model.loss(batch), last_only_loss(model))


def cloze_loss(model, seed):
    """The loss of BERT4Rec's cloze draws for generator ``seed``, masks recomputed here from the same draws."""
    generator = torch.Generator().manual_seed(seed)
    eligible = SEQS > 0
    masked = eligible & (torch.rand(SEQS.shape, generator=generator) < model.config.mask_prob)
    last = torch.zeros_like(eligible)
    last[:, -1] = True  # every row of SEQS ends with an item
    masked |= last & ~masked.any(1, keepdim=True)
    inputs = SEQS.masked_fill(masked, model.mask_token)
    targets = SEQS.masked_fill(~masked, 0)
    return next_item_loss(model, model.sequence_states(inputs), Batch(inputs, targets))


def last_only_loss(model):
    inputs = SEQS.clone()
    inputs[:, -1] = model.mask_token
    targets = torch.zeros_like(SEQS)
    targets[:, -1] = SEQS[:, -1]
    return next_item_loss(model, model.sequence_states(inputs), Batch(inputs, targets))


def test_last_mask_prob_zero_is_the_plain_cloze_task():
    model = make(mask_prob=0.3)
    with torch.no_grad():
        for seed in range(5):
            loss = model.loss(Batch(SEQS, SEQS.clone(), generator=torch.Generator().manual_seed(seed)))
            torch.testing.assert_close(loss, cloze_loss(model, seed))


def test_last_mask_prob_draws_whole_batches_of_last_item_windows():
    """As RecBole's ft_ratio: a batch either masks only each window's last item (its targets at full weight in
    the batch's mean) or is a plain cloze batch."""
    model = make(mask_prob=0.3, last_mask_prob=0.5)
    with torch.no_grad():
        last = last_only_loss(model)
        kinds = []
        for seed in range(12):
            loss = model.loss(Batch(SEQS, SEQS.clone(), generator=torch.Generator().manual_seed(seed)))
            if torch.isclose(loss, last):
                kinds.append("last")
            else:
                torch.testing.assert_close(loss, cloze_loss(model, seed))
                kinds.append("cloze")
    assert {"last", "cloze"} == set(kinds)


@pytest.mark.parametrize("bad", [{"mask_prob": 1.5}, {"last_mask_prob": -0.1}])
def test_probabilities_outside_zero_one_are_rejected(bad):
    with pytest.raises(LlmrecError, match="between 0 and 1"):
        make(**bad)


@pytest.mark.parametrize("loss", LOSSES)
def test_output_bias_enters_positives_and_negatives_of_every_loss(loss):
    """The bias of a target and of a negative both get a gradient: item 29 is never a target, only a negative
    (sampled losses) or one of the catalog's items (ce)."""
    model = make(output_bias=True, loss=loss, num_negatives=4).train()
    negatives = None if loss == "ce" else torch.full((*SEQS.shape, 1 if loss == "bce" else 4), 29)
    value = model(Batch(SEQS, SEQS.clone(), negatives, torch.Generator().manual_seed(0)))
    value.backward()
    grad = model.output_bias.grad
    assert torch.isfinite(value) and grad is not None
    masked_targets = SEQS[SEQS > 0].unique()
    assert grad[masked_targets].abs().sum() > 0 and grad[29] != 0
