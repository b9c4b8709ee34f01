"""SFT of LLM recommenders on ML-100K with the bundled SmolLM2: recipes, checks before training, the run
directory, exact resume, the curriculum and the contrastive stage."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from llmrec.adapters.bundle import load_bundle, save_items
from llmrec.adapters.projectors import Projector
from llmrec.adapters.tasks import TaskExample
from llmrec.errors import LlmrecError
from llmrec.runs import read_config, read_metrics
from llmrec.training.curriculum import training_rows
from llmrec.training.recipe import Recipe, load_recipe, recipe_from_dict
from llmrec.training.sft import prepare, train_sft, training_examples

# The shipped SFT recipes, via the link (RL recipes, which name rewards, are tested in test_rl.py).
SHIPPED = sorted((Path(__file__).parents[2] / "adapters").glob("*.yaml"))
RECIPES = [p for p in SHIPPED if "rewards" not in yaml.safe_load(p.read_text())]


def recipe_of(run: Path) -> tuple[Recipe, dict]:
    """The recipe and run facts an SFT run directory records."""
    values, facts = read_config(run, ("llm-sft",))
    return recipe_from_dict(values), facts


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_load(path: Path) -> None:
    recipe = load_recipe(path, {"encoder": "runs/other"})
    assert recipe.encoder == "runs/other"  # flags override the file
    assert (recipe.task.item_text == "title") == (recipe.representation == "none")
    assert load_recipe(path.stem) == load_recipe(path)  # shipped recipes load by name too


def test_the_representation_decides_whether_items_carry_vectors() -> None:
    assert recipe_from_dict({"representation": "none", "task": {"item_text": "vector"}}).task.item_text == "title"
    assert recipe_from_dict({"representation": "id"}).task.item_text == "hybrid"  # titled by default
    vector = recipe_from_dict({"representation": "id", "task": {"output": "verbalizer", "item_text": "vector"}})
    assert vector.task.item_text == "vector" and vector.task.template_name == "rank_candidates_labelled_vector"


def test_unknown_keys_are_named() -> None:
    with pytest.raises(LlmrecError, match="unknown key.*epochz"):
        recipe_from_dict({"epochz": 3})
    with pytest.raises(LlmrecError, match="trainer: unknown field.*epochz"):
        recipe_from_dict({"trainer": {"epochz": 3}})
    with pytest.raises(LlmrecError, match="lora: unknown field.*alpha"):
        recipe_from_dict({"lora": {"alpha": 3}})
    with pytest.raises(LlmrecError, match="output_dir cannot be set"):
        recipe_from_dict({"trainer": {"output_dir": "/tmp/elsewhere"}})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"encoder": "/nonexistent/run"}, "no such encoder run"),
        ({"encoder": None}, "needs an encoder run"),
        ({"projector": {"out_dim": 123}}, "LLM hidden size is 576"),
        ({"task": {"template": "rank_candidates_labelled"}}, "one <item-emb> after each item title"),
        ({"task": {"task": "explain", "output": "generative"}}, "no gold rationales"),
        ({"task": {"task": "query", "output": "generative", "num_candidates": 20}}, "task 'query' is text only"),
        (
            {"representation": "text", "task": {"item_text": "vector", "user_vector": True}},
            "needs representation 'id'",
        ),
        ({"representation": "none", "task": {"output": "item"}}, "not 'none'"),
        ({"trainer": {"item_loss": "all"}}, "item_loss must be one of candidates, catalog"),
        ({"trainer": {"item_loss": "catalog"}}, "item_loss 'catalog' is for task output item"),
        ({"trainer": {"distill": 0.5}}, "distill learns the encoder's own catalog scores"),
        ({"trainer": {"distill": -1.0}}, "distill must be >= 0"),
        ({"task": {"prior": 1.0}}, "prior adds the encoder's own scores: it needs output item and user_vector"),
        ({"task": {"item_text": "vector", "user_vector": True, "output": "item", "prior": -1.0}}, "prior must be"),
        ({"task": {"item_text": "vector", "user_vector": True, "output": "item", "prior": 1.0}}, "curriculum kind"),
        ({"trainer": {"lr_scheduler_type": "sideways"}}, "recipe trainer: .*sideways"),
        ({"lora": {"target_modules": ["no_such_proj"]}}, "target_modules"),
    ],
)
def test_bad_recipes_fail_before_training(tiny_recipe, tmp_path: Path, changes, message) -> None:
    with pytest.raises(LlmrecError, match=message):
        train_sft(tiny_recipe(**changes), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_encoder_of_another_dataset_is_refused(tiny_recipe, tiny_dataset, tmp_path: Path) -> None:
    with pytest.raises(LlmrecError, match="encoder trained on another dataset"):
        train_sft(tiny_recipe(dataset=str(tiny_dataset.path)), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_run_directory_holds_the_bundle(sft_run: Path, sasrec_run: Path, ml100k) -> None:
    from llmrec.adapters.representations import item_representation

    recipe, facts = recipe_of(sft_run)
    assert recipe.representation == "id" and facts["split_fingerprint"] and facts["items"]["num_items"] == 1682
    metrics = read_metrics(sft_run)
    assert metrics["finished"] and metrics["steps"] == 2 and metrics["peak_rss_mib"] > 0
    assert metrics["threads"] == 1  # the recipe's trainer.threads, recorded beside train_seconds
    logged = (sft_run / "log.jsonl").read_text().splitlines()
    assert len(logged) >= 2 and '"loss"' in logged[0]
    bundle = load_bundle(sft_run)
    assert (bundle.lora / "adapter_config.json").is_file()
    assert torch.equal(bundle.items.vectors, item_representation("id", ml100k, sasrec_run).vectors)
    # The bundle reloads bit-identically: projector and adapter equal the checkpoint chosen on validation.
    chosen = sft_run / "checkpoints" / metrics["best_checkpoint"]
    again = Projector.load(chosen / "projector")
    for (name, a), (_, b) in zip(bundle.projector.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    ours = load_file(str(bundle.lora / "adapter_model.safetensors"))
    theirs = load_file(str(chosen / "lora" / "adapter_model.safetensors"))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_every_checkpoint_is_scored_on_validation_and_the_best_is_kept(sft_run: Path) -> None:
    from llmrec.eval.llm import evaluate_llm
    from llmrec.inference.recommender import LLMRecommender

    metrics = read_metrics(sft_run)
    scores = metrics["valid_at_checkpoint"]
    assert set(scores) == {"checkpoint-1", "checkpoint-2"} and all(s["users"] == 4 for s in scores.values())
    best = max(scores, key=lambda name: (scores[name]["ndcg@10"], int(name.rsplit("-", 1)[1])))
    assert metrics["best_checkpoint"] == best and metrics["valid_metric"] == "ndcg@10"
    assert metrics["valid_best"] == scores[best]
    logged = [json.loads(line) for line in (sft_run / "log.jsonl").read_text().splitlines()]
    assert sorted(e["step"] for e in logged if "valid_ndcg@10" in e) == [1, 2]
    # the figures are what serving the checkpoint gives on those users: the run itself now holds it
    recommender = LLMRecommender.from_run(sft_run)
    try:
        served = evaluate_llm(recommender, "valid", limit=4)
    finally:
        recommender.close()
    assert served["ndcg@10"] == pytest.approx(scores[best]["ndcg@10"], abs=1e-9)


@pytest.mark.parametrize("output", ["verbalizer", "item"])
def test_vector_prompts_with_the_user_state_train_and_serve(tiny_recipe, tmp_path: Path, ml100k, output) -> None:
    from llmrec.adapters.tasks import build_examples
    from llmrec.data.splits import leave_one_out_split
    from llmrec.eval.llm import SCORED, evaluate_llm
    from llmrec.inference.recommender import LLMRecommender, recommend_llm

    run = tmp_path / "run"
    task = {"item_text": "vector", "user_vector": True, "output": output}
    metrics = train_sft(tiny_recipe(task=task, trainer={"validate": output == "item"}), run)
    assert metrics["steps"] == 2 and np.isfinite(metrics["train_loss"])
    if output == "item":  # validated through the vector scores and the user states
        assert set(metrics["valid_at_checkpoint"]) == {"checkpoint-1", "checkpoint-2"}
    else:  # validation off: the last checkpoint is the run's
        assert metrics["best_checkpoint"] is None and "valid_at_checkpoint" not in metrics
    recipe, _ = recipe_of(run)
    assert recipe.task.item_text == "vector" and recipe.task.user_vector and recipe.task.output == output
    recommender = LLMRecommender.from_run(run)
    try:
        assert recommender.user_states is not None
        result = evaluate_llm(recommender, "test", limit=3)
        top = recommend_llm(recommender, "196", k=5)
        examples = build_examples(
            ml100k, leave_one_out_split(ml100k), "test", recommender.task, recommender.user_states
        )
        scores = recommender.rank(examples[:2])
        if output == "item":  # the last hidden state dotted with the candidates' projected vectors
            bundle = load_bundle(run)
            with torch.no_grad():
                embeds = recommender.prompter(examples[0].prompt, examples[0].item_ids, examples[0].user_vectors)
                out = recommender.engine.hf_model(inputs_embeds=embeds[None], output_hidden_states=True)
                state = out.hidden_states[-1][0, -1].float()  # (H,): the model may run in bf16
                expected = bundle.projector(bundle.items.vectors[examples[0].candidates]) @ state
            # rank batched two prompts: bf16 rounds them differently from this one alone
            close = 1e-4 if recommender.engine.dtype == "float32" else 0.05
            np.testing.assert_allclose(scores[0], expected.double().numpy(), rtol=close, atol=close)
    finally:
        recommender.close()
    assert result["examples"] == 3 and result["answers"] == SCORED and "valid_ratio" not in result
    assert scores.shape == (2, 20) and np.isfinite(scores).all()
    history = set(ml100k.sequences[ml100k.user_id("196")].tolist())
    assert len(top["recommendations"]) == 5 and not {r["item_id"] for r in top["recommendations"]} & history
    if output == "item":  # an encoder retrained in place since: its user states no longer go with the run's items
        items = load_bundle(run).items
        save_items(run, dataclasses.replace(items, vectors=items.vectors * 1.01))
        with pytest.raises(LlmrecError, match="item embeddings are not those .* was trained with"):
            LLMRecommender.from_run(run)


def test_an_interrupted_run_resumes_to_the_same_weights(tiny_recipe, sft_run: Path, tmp_path: Path) -> None:
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:  # checkpoint-1 is written; step 2's is not
                raise KeyboardInterrupt

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_sft(tiny_recipe(), run, callbacks=[Crash()])
    crashed = read_metrics(run)
    assert not crashed.get("finished") and (run / "checkpoints" / "checkpoint-1").is_dir()
    at_first = crashed["seconds_at_checkpoint"]["checkpoint-1"]  # the training time when checkpoint-1 was written
    with pytest.raises(LlmrecError, match="already exists.*--resume"):
        train_sft(tiny_recipe(), run)
    metrics = train_sft(Recipe(), run, resume=True)  # the run's own recipe is used, not the one given
    assert metrics["steps"] == 2 and metrics["resumed"]
    # the reported time counts up to checkpoint-1 before the crash, then step 2 after the resume
    assert 0 < at_first < metrics["seconds_at_checkpoint"]["checkpoint-2"] <= metrics["train_seconds"]
    ours = load_file(str(run / "lora" / "adapter_model.safetensors"))
    theirs = load_file(str(sft_run / "lora" / "adapter_model.safetensors"))
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-6)
    with pytest.raises(LlmrecError, match="already finished"):
        train_sft(tiny_recipe(), run, resume=True)


def _examples(count: int, hybrid: bool) -> list[TaskExample]:
    prompt = [{"role": "user", "content": "hybrid" if hybrid else "text"}]
    return [TaskExample(i, [1], [1, 2], 1, prompt, [1] if hybrid else [], "A", ["A", "B"]) for i in range(count)]


@pytest.mark.parametrize("kind", ["llara", "rsllm", "none"])
def test_the_curriculum_is_fixed_before_training(kind: str) -> None:
    recipe = recipe_from_dict({"curriculum": {"kind": kind, "ramp": 0.5, "text_fraction": 0.3}})
    text, hybrid = _examples(50, False), _examples(50, True)
    rows = training_rows(text, hybrid, recipe, 200, seed=0)
    assert rows == training_rows(text, hybrid, recipe, 200, seed=0)  # deterministic: a resumed run sees the same rows
    mode = [bool(row["item_ids"]) for row in rows]
    if kind == "llara":  # hybrid with a probability rising linearly to 1 over the first half
        assert sum(mode[:20]) < 10 and all(mode[100:]) and 0 < sum(mode[:100]) < 100
    elif kind == "rsllm":  # text-only stage, then hybrid
        assert not any(mode[:60]) and all(mode[60:])
    else:
        assert all(mode)
    text_only = recipe_from_dict({"representation": "none"})
    assert not any(row["item_ids"] for row in training_rows(text, None, text_only, 20, seed=0))


def test_rsllm_contrastive_loss_trains_the_projector(tiny_recipe, tmp_path: Path) -> None:
    from llmrec.adapters.hybrid import HybridCollator

    recipe = tiny_recipe(curriculum={"kind": "rsllm", "contrastive_weight": 1.0})
    prepared = prepare(recipe, tmp_path / "run")
    model, _ = prepared.build_model()
    _, hybrid = training_examples(prepared)
    rows = [{"prompt": e.prompt, "item_ids": e.item_ids, "answer": e.answer} for e in hybrid[:2]]
    out = model(**HybridCollator(model.prompter, padding_side="left")(rows))
    assert out["contrastive_loss"] > 0 and torch.isclose(out["loss"], out["lm_loss"] + out["contrastive_loss"])
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())


def test_the_catalog_item_loss_scores_the_target_against_every_item(tiny_recipe, tmp_path: Path) -> None:
    from llmrec.adapters.hybrid import HybridCollator

    task = {"item_text": "vector", "user_vector": True, "output": "item"}
    recipe = tiny_recipe(task=task, curriculum={"kind": "none"}, trainer={"item_loss": "catalog"})
    prepared = prepare(recipe, tmp_path / "run")
    model, _ = prepared.build_model()
    model.eval()  # no dropout: the two losses below see the same states
    text, hybrid = training_examples(prepared)
    batch = HybridCollator(model.prompter, padding_side="left")(training_rows(text, hybrid, recipe, 3, seed=0))
    with torch.no_grad():
        catalog = model(**batch)["loss"]
        model.item_loss = "candidates"
        among_candidates = model(**batch)["loss"]
        # by hand: every item as a candidate of every row, the target's column found by its id
        items = torch.arange(1, prepared.dataset.num_items + 1).expand(3, -1)
        embeds = model.prompter.embed_batch(
            batch["input_ids"], batch["item_slots"], batch["item_ids"], batch["user_slots"], batch["user_vectors"]
        )
        scores = model.prompter.score_candidates(model.last_state(embeds, batch["attention_mask"]), items)
        target_items = batch["candidate_ids"].gather(1, batch["targets"][:, None])[:, 0]
        columns = (items == target_items[:, None]).float().argmax(1)  # where each target sits among the items
        expected = torch.nn.functional.cross_entropy(scores, columns)
    torch.testing.assert_close(catalog, expected, rtol=1e-4, atol=1e-4)
    assert catalog > among_candidates  # 1,682 competitors instead of 5: the target's share can only shrink


def test_two_processes_train_with_ddp(tiny_recipe, tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    import yaml

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe().to_dict()))
    launcher = os.path.join(os.path.dirname(sys.executable), "accelerate")
    command = [launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "llmrec", "sft", "--recipe", str(recipe)]
    command += ["--out", str(tmp_path / "ddp"), "--no-eval", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    errors = [line for line in result.stderr.splitlines() if "rror" in line and "elastic" not in line]
    assert result.returncode == 0, "\n".join(errors)[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["finished"] and metrics["rows_trained"] == 2 * 2 * 2
    assert (tmp_path / "ddp" / "checkpoints" / "checkpoint-2" / "rng_state_1.pth").is_file()


def test_distillation_adds_the_kl_to_the_encoders_own_catalog_distribution(
    tiny_recipe, sasrec_run: Path, tmp_path: Path
) -> None:
    from llmrec.adapters.hybrid import HybridCollator
    from llmrec.encoders.run import load_best

    task = {"item_text": "vector", "user_vector": True, "output": "item"}
    trainer = {"item_loss": "catalog", "distill": 0.5, "distill_temperature": 2.0}
    recipe = tiny_recipe(task=task, curriculum={"kind": "none"}, trainer=trainer)
    prepared = prepare(recipe, tmp_path / "run")
    model, _ = prepared.build_model()
    model.eval()
    text, hybrid = training_examples(prepared)
    batch = HybridCollator(model.prompter, padding_side="left")(training_rows(text, hybrid, recipe, 3, seed=0))
    with torch.no_grad():
        out = model(**batch)
        embeds = model.prompter.embed_batch(
            batch["input_ids"], batch["item_slots"], batch["item_ids"], batch["user_slots"], batch["user_vectors"]
        )
        student = model.prompter.score_catalog(model.last_state(embeds, batch["attention_mask"])) / 2.0
        # the teacher by hand: the encoder's user states against its own item embeddings (item 0 is padding)
        items = load_best(sasrec_run).item_embeddings()[1:]
        teacher = torch.softmax(batch["user_vectors"] @ items.T / 2.0, dim=-1)  # (B, N)
        kl = (teacher * (teacher.log() - torch.log_softmax(student, dim=-1))).sum(1).mean() * 4.0
    assert kl > 0
    torch.testing.assert_close(out["distill_loss"], kl, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["loss"], out["lm_loss"] + 0.5 * kl, rtol=1e-4, atol=1e-4)


def test_a_prior_adds_the_encoders_own_scores_to_the_llms(tiny_recipe, sasrec_run: Path, tmp_path: Path) -> None:
    """With task prior w, every item score is the LLM's plus w times the encoder's own (its user state dotted with
    the item's embedding), in the catalog loss as among the candidates: the LLM learns a correction of it."""
    from torch.nn.functional import cross_entropy

    from llmrec.adapters.hybrid import HybridCollator
    from llmrec.encoders.run import load_best

    items = load_best(sasrec_run).item_embeddings()  # (N + 1, D), row 0 padding
    for item_loss in ("catalog", "candidates"):
        task = {"item_text": "vector", "user_vector": True, "output": "item", "prior": 0.5}
        recipe = tiny_recipe(task=task, curriculum={"kind": "none"}, trainer={"item_loss": item_loss})
        prepared = prepare(recipe, tmp_path / item_loss)
        model, _ = prepared.build_model()
        model.eval()
        text, hybrid = training_examples(prepared)
        batch = HybridCollator(model.prompter, padding_side="left")(training_rows(text, hybrid, recipe, 3, seed=0))
        users, candidates = batch["user_vectors"], batch["candidate_ids"]
        with torch.no_grad():
            out = model(**batch)
            embeds = model.prompter.embed_batch(
                batch["input_ids"], batch["item_slots"], batch["item_ids"], batch["user_slots"], users
            )
            state = model.last_state(embeds, batch["attention_mask"])
            own = state @ model.prompter.project(torch.arange(len(items))).float().T  # (B, N + 1): the LLM's
            teacher = users @ items.T  # by hand
        with_prior, alone = own + 0.5 * teacher, own
        if item_loss == "catalog":
            target = candidates.gather(1, batch["targets"][:, None])[:, 0] - 1
            with_prior, alone = with_prior[:, 1:], alone[:, 1:]
        else:
            target = batch["targets"]
            with_prior, alone = with_prior.gather(1, candidates), alone.gather(1, candidates)
        torch.testing.assert_close(out["loss"], cross_entropy(with_prior, target), rtol=1e-4, atol=1e-4)
        assert not torch.isclose(out["loss"], cross_entropy(alone, target))  # the prior changes the loss


def test_distillation_refuses_a_teacher_with_an_item_bias(tiny_recipe, tmp_path: Path) -> None:
    """A BERT4Rec with output_bias scores items by more than its user state and item embeddings: distilling
    those two alone would teach another ranking, so the recipe stops with the reason."""
    from llmrec.encoders.train import train_encoder

    run = tmp_path / "bert4rec"
    encoder = {"hidden_size": 32, "max_len": 20, "num_layers": 1, "inner_size": 64, "output_bias": True}
    train = {"epochs": 1, "batch_size": 256, "stride": 20, "threads": 1}
    train_encoder(run, "bert4rec", "ml-100k", encoder, train)
    task = {"item_text": "vector", "user_vector": True, "output": "item"}
    trainer = {"item_loss": "catalog", "distill": 0.5}
    recipe = tiny_recipe(task=task, curriculum={"kind": "none"}, trainer=trainer, encoder=str(run))
    with pytest.raises(LlmrecError, match="per-item output bias"):
        training_examples(prepare(recipe, tmp_path / "run"))


def test_the_cli_scores_validation_by_default(ml100k, tmp_path: Path, llmrec_here) -> None:
    from llmrec.data.dataset import write_dataset

    users = ml100k.users[ml100k.users["user_id"] <= 12]
    kept = ml100k.interactions[ml100k.interactions["user_id"] <= 12]
    data = write_dataset(tmp_path / "ml-head", kept, ml100k.items, users, {"name": "ml-head"})
    recipe = tmp_path / "recipe.yaml"
    values = {
        "dataset": str(data),
        "representation": "none",
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "task": {"task": "rank", "output": "verbalizer", "max_history": 3, "num_candidates": 5},
        "trainer": {"max_steps": 1, "per_device_train_batch_size": 2, "threads": 1, "valid_users": 0},
    }
    recipe.write_text(yaml.safe_dump(values))
    result = llmrec_here("sft", "--recipe", str(recipe), "--out", str(tmp_path / "run"), "--json")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert "c20_valid" in out and "c20_test" not in out  # test is scored only on request (--split test)
    assert out["c20_valid"]["examples"] == 12 and out["best_checkpoint"] == "checkpoint-1"
    assert out["valid_at_checkpoint"]["checkpoint-1"]["users"] == 12  # valid_users 0: every validation user
    # the checkpoint's validation figures are the finished run's own, served the same way
    assert out["c20_valid"]["ndcg@10"] == pytest.approx(out["valid_best"]["ndcg@10"], abs=1e-9)
    assert read_metrics(tmp_path / "run")["c20_valid"]["hr@1"] == out["c20_valid"]["hr@1"]


def test_a_query_run_learns_the_structure_with_the_targets_title_as_the_query(tiny_recipe, tmp_path: Path) -> None:
    """No gold query exists: SFT of the query task (a warm start for Rec-R1's RL) supervises a rationale from the
    history, the marker and the target's title, and its answer tokens are what the loss reads."""
    from llmrec.adapters.hybrid import HybridCollator
    from llmrec.adapters.tasks import query_completions
    from llmrec.inference.answers import parse_answer

    recipe = tiny_recipe(representation="none", task={"task": "query", "output": "generative", "num_candidates": 20})
    prepared = prepare(recipe, tmp_path / "run")
    text, hybrid = training_examples(prepared)
    assert hybrid is None
    plain = [TaskExample(**{**e.as_row(), "answer": ""}) for e in text[:3]]
    assert [e.answer for e in text[:3]] == query_completions(prepared.dataset, plain, "Answer:")
    for example in text:
        assert example.answer.endswith(f"\nAnswer:\n{prepared.dataset.titles[example.target]}")
        assert parse_answer(example.answer) is not None
    model, tokenizer = prepared.build_model()
    batch = HybridCollator(model.prompter, padding_side="left")([{"prompt": text[0].prompt, "answer": text[0].answer}])
    labels = batch["labels"][0]
    assert tokenizer.decode(labels[labels != -100]).startswith(text[0].answer)
    train_sft(recipe, tmp_path / "run")
    assert read_metrics(tmp_path / "run")["finished"]
