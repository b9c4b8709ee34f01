"""Hybrid prompts with the bundled SmolLM2: projected item vectors spliced in at the placeholders, batches with
answer labels, gradients into the projector."""

import pytest
import torch

from llmrec.adapters import (
    PLACEHOLDER,
    USER_PLACEHOLDER,
    HybridCollator,
    HybridPrompter,
    ProjectorConfig,
    build_projector,
    item_representation,
    render_chat,
)
from llmrec.errors import LlmrecError
from llmrec.inference.engine import Request
from llmrec.inference.prompting import render_prompt
from llmrec.prompts import render

HISTORY = [50, 181, 1]  # Star Wars, Return of the Jedi, Toy Story
CANDIDATES = [100, 258, 7]  # Fargo, Contact, Twelve Monkeys


@pytest.fixture(scope="module")
def prompter(smollm, ml100k, sasrec_run):
    tokenizer, model = smollm
    items = item_representation("id", ml100k, encoder_run=sasrec_run)
    torch.manual_seed(0)
    projector = build_projector(ProjectorConfig(kind="mlp").resolve(items.dim, model.config.hidden_size)).eval()
    return HybridPrompter(tokenizer, model.get_input_embeddings(), projector, items)


def rank_messages(dataset, history=HISTORY, candidates=CANDIDATES):
    text = render(
        "rank_candidates_hybrid",
        history=[dataset.titles[i] for i in history],
        candidates=[dataset.titles[i] for i in candidates],
    )
    return [{"role": "user", "content": text}]


def test_the_template_puts_a_placeholder_after_every_title(ml100k):
    text = rank_messages(ml100k)[0]["content"]
    assert text.count(PLACEHOLDER) == len(HISTORY) + len(CANDIDATES)
    for item in HISTORY + CANDIDATES:
        assert f"- {ml100k.titles[item]} {PLACEHOLDER}\n" in text + "\n"


def test_placeholders_hold_the_projected_vectors_and_the_rest_is_the_text(prompter, smollm, ml100k):
    tokenizer, model = smollm
    messages = rank_messages(ml100k)
    ids = HISTORY + CANDIDATES
    tokens = prompter.tokenize(messages, ids)
    with torch.no_grad():
        embeds = prompter.embed(tokens)
        projected = prompter.projector(prompter.items.vectors[torch.tensor(ids)])
    assert embeds.shape == (len(tokens), model.config.hidden_size) and len(tokens.slots) == len(ids)
    # Each placeholder is one position, holding its item's projected vector, in order.
    assert torch.equal(embeds[tokens.slots], projected)
    # Every other position is a token of the rendered chat text with the placeholders cut out.
    others = [i for i in range(len(tokens)) if i not in set(tokens.slots)]
    text_ids = [tokens.input_ids[i] for i in others]
    rendered = render_chat(tokenizer, messages)
    assert tokenizer.decode(text_ids, clean_up_tokenization_spaces=False) == rendered.replace(PLACEHOLDER, "")
    with torch.no_grad():
        assert torch.equal(embeds[others], model.get_input_embeddings()(torch.tensor(text_ids)))
    # Each placeholder sits right after its title's tokens.
    for slot, item in zip(tokens.slots, ids, strict=True):
        before = tokenizer.decode(tokens.input_ids[:slot], clean_up_tokenization_spaces=False)
        assert before.endswith(f"- {ml100k.titles[item]} ")


def test_without_placeholders_the_tokens_are_the_engines(prompter, smollm):
    tokenizer, model = smollm
    messages = [{"role": "user", "content": "Recommend a film."}]
    assert prompter.tokenize(messages, []).input_ids == render_prompt(tokenizer, Request(messages=messages))
    partial = [*messages, {"role": "assistant", "content": "I suggest"}]
    assert prompter.tokenize(partial, []).input_ids == render_prompt(tokenizer, Request(messages=partial))
    assert prompter.tokenize("Heat", []).input_ids == render_prompt(tokenizer, Request(prompt="Heat"))
    with torch.no_grad():
        embeds = prompter(messages, [])
        ids = torch.tensor([render_prompt(tokenizer, Request(messages=messages))])
        from_ids = model.generate(input_ids=ids, max_new_tokens=6, do_sample=False)[0, ids.shape[1] :]
        from_embeds = model.generate(inputs_embeds=embeds[None], max_new_tokens=6, do_sample=False)[0]
    assert from_embeds.tolist() == from_ids.tolist()


def test_a_text_prompt_splices_too(prompter, smollm, ml100k):
    tokenizer, _ = smollm
    text = f"Did you like {ml100k.titles[100]} {PLACEHOLDER} or {ml100k.titles[7]} {PLACEHOLDER}?"
    tokens = prompter.tokenize(text, [100, 7])
    assert len(tokens.slots) == 2 and tokens.item_ids == [100, 7]
    text_ids = [t for i, t in enumerate(tokens.input_ids) if i not in tokens.slots]
    assert tokenizer.decode(text_ids, clean_up_tokenization_spaces=False) == text.replace(PLACEHOLDER, "")
    with torch.no_grad():
        assert prompter(text, [100, 7]).shape == (len(tokens), 576)


def test_item_ids_must_match_the_placeholders(prompter, ml100k):
    messages = rank_messages(ml100k)
    with pytest.raises(LlmrecError, match="has 6 <item-emb> placeholder.* but 5 item id"):
        prompter(messages, (HISTORY + CANDIDATES)[:-1])
    with pytest.raises(LlmrecError, match="has 1 <item-emb> placeholder.* but 2 item id"):
        prompter(f"Heat {PLACEHOLDER}", [733, 100])
    with pytest.raises(LlmrecError, match=r"item ids \[0, 1683\] are not in the catalog"):
        prompter(f"{PLACEHOLDER} {PLACEHOLDER}", [0, 1683])
    with pytest.raises(LlmrecError, match="non-empty list"):
        prompter([], [])


def test_a_user_placeholder_holds_its_projected_vector(prompter, ml100k):
    text = f"History: {PLACEHOLDER}{PLACEHOLDER}\nUser: {USER_PLACEHOLDER}\nCandidates: A{PLACEHOLDER} B{PLACEHOLDER}"
    user = torch.randn(1, prompter.items.dim)
    tokens = prompter.tokenize(text, [50, 181, 100, 7], user.tolist())
    assert len(tokens.slots) == 4 and len(tokens.user_slots) == 1
    assert tokens.slots[1] < tokens.user_slots[0] < tokens.slots[2]  # in text order, between history and candidates
    with torch.no_grad():
        embeds = prompter.embed(tokens)
        assert torch.equal(embeds[list(tokens.user_slots)], prompter.projector(user))  # the same projector
        assert torch.equal(embeds[tokens.slots], prompter.project([50, 181, 100, 7]))
        # A batch of it splices the user vector at the same place.
        row = {"prompt": text, "item_ids": [50, 181, 100, 7], "user_vectors": user.tolist()}
        out = HybridCollator(prompter, padding_side="left")([row])
        assert out["user_slots"].tolist() == [[0, tokens.user_slots[0]]]
        torch.testing.assert_close(out["user_vectors"], user)
        batch = prompter.embed_batch(
            out["input_ids"], out["item_slots"], out["item_ids"], out["user_slots"], out["user_vectors"]
        )
    torch.testing.assert_close(batch[0], embeds, rtol=0, atol=1e-5)
    with pytest.raises(LlmrecError, match="has 1 <user-emb> placeholder.* but 0 vector"):
        prompter(text, [50, 181, 100, 7])
    with pytest.raises(LlmrecError, match="has 0 <user-emb> placeholder.* but 1 vector"):
        prompter(f"Heat {PLACEHOLDER}", [733], user.tolist())


def test_a_projector_for_another_llm_is_refused(smollm, prompter):
    tokenizer, model = smollm
    wrong = build_projector(ProjectorConfig(kind="linear").resolve(prompter.items.dim, 960))
    with pytest.raises(LlmrecError, match="outputs 960 dimensions but the LLM's hidden size is 576"):
        HybridPrompter(tokenizer, model.get_input_embeddings(), wrong, prompter.items)


def rows(dataset):
    return [
        {"prompt": rank_messages(dataset), "item_ids": HISTORY + CANDIDATES, "answer": dataset.titles[100]},
        {"prompt": rank_messages(dataset, [1], [7, 100]), "item_ids": [1, 7, 100], "answer": dataset.titles[7]},
    ]


def collate(prompter, batch, side="right"):
    """The collator's batch and its ``inputs_embeds`` (vectors spliced in as the model's forward pass does)."""
    out = HybridCollator(prompter, padding_side=side)(batch)
    return out, prompter.embed_batch(out["input_ids"], out["item_slots"], out["item_ids"])


@pytest.mark.parametrize("side", ["right", "left"])
def test_collator_pads_and_labels_only_the_answer(prompter, smollm, ml100k, side):
    tokenizer, _ = smollm
    batch = rows(ml100k)
    with torch.no_grad():
        out, embeds = collate(prompter, batch, side)
    mask, labels = out["attention_mask"], out["labels"]
    assert embeds.shape[:2] == mask.shape == labels.shape == out["input_ids"].shape and embeds.shape[0] == 2
    assert out["item_ids"].tolist() == [i for example in batch for i in example["item_ids"]]
    for row, example in enumerate(batch):
        prompt_len = len(prompter.tokenize(example["prompt"], example["item_ids"]))
        answer = tokenizer(example["answer"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        length = prompt_len + len(answer)
        positions, width = torch.arange(embeds.shape[1]), embeds.shape[1]
        real = positions >= width - length if side == "left" else positions < length
        assert mask[row].tolist() == real.long().tolist()
        assert (labels[row][~real] == -100).all()
        kept = labels[row][real]
        assert (kept[:prompt_len] == -100).all() and kept[prompt_len:].tolist() == answer
        with torch.no_grad():
            expected = prompter.embed(prompter.tokenize(example["prompt"], example["item_ids"]))
        # The batch projects all its items in one product: equal up to float summation order.
        torch.testing.assert_close(embeds[row][real][:prompt_len], expected, rtol=0, atol=1e-5)


def test_collator_mixes_text_only_rows(prompter, ml100k):
    text_only = {"prompt": "History: Toy Story (1995)\nNext:", "item_ids": [], "answer": ml100k.titles[2]}
    batch = [rows(ml100k)[1], text_only]
    with torch.no_grad():
        out, embeds = collate(prompter, batch)
    assert out["item_slots"][:, 0].tolist() == [0, 0, 0]  # every vector goes into the hybrid row
    with torch.no_grad():
        alone = prompter.embed(prompter.tokenize(text_only["prompt"], []))
    torch.testing.assert_close(embeds[1][: len(alone)], alone, rtol=0, atol=0)


def test_collator_without_answers_gives_no_labels(prompter, ml100k):
    batch = [{k: v for k, v in row.items() if k != "answer"} for row in rows(ml100k)]
    out = HybridCollator(prompter, padding_side="left")(batch)
    assert set(out) == {"input_ids", "attention_mask", "item_slots", "item_ids"}
    with pytest.raises(LlmrecError, match="every row of a batch has an answer or none"):
        HybridCollator(prompter)([batch[0], rows(ml100k)[1]])


def test_the_lm_loss_trains_the_projector(prompter, smollm, ml100k):
    _, model = smollm
    projector = prompter.projector.train()
    before = {k: v.detach().clone() for k, v in projector.named_parameters()}
    optimizer = torch.optim.AdamW(projector.parameters(), lr=1e-3)
    try:
        out, embeds = collate(prompter, rows(ml100k))
        loss = model(inputs_embeds=embeds, attention_mask=out["attention_mask"], labels=out["labels"]).loss
        loss.backward()
        for name, param in projector.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        optimizer.step()
        for name, param in projector.named_parameters():
            assert not torch.equal(param, before[name]), name
    finally:
        with torch.no_grad():
            for name, param in projector.named_parameters():
                param.copy_(before[name])
        projector.eval()
    assert torch.isfinite(loss)
