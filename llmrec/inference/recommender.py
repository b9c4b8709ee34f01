"""LLM recommenders on an engine: an LLM run's bundle (LoRA, projector, item vectors), or a base LLM zero-shot.

:class:`LLMRecommender` turns task examples (:func:`llmrec.adapters.tasks.build_examples`) into engine requests:
chat messages for text-only prompts, ``prompt_embeds`` for hybrid ones (the projected item vectors spliced into
the token embeddings, :class:`llmrec.adapters.HybridPrompter`), with the run's LoRA adapter. ``rank`` scores every
candidate of an example: by its label letter (verbalizer) or its title (generative) as the request's complete
answer, or (item) by the prompt's last hidden state dotted with the candidate's projected vector; ``answer``
serves one recommendation per example, always a candidate: the best-scored one, or a title decoded under the
candidates' grounding.

Both engines serve a bundle. The hf engine applies the adapter per request. vLLM 0.32 on CPU cannot combine
``prompt_embeds`` with a ``LoRARequest`` (its LoRA embedding kernel fails on embedded prompts), so a run with a
projector is served on vLLM from a merged checkpoint (the LoRA folded into the base weights, built once and cached
in ``RUN/merged/``); so is a text-only run on a machine without a GPU (vLLM's CPU LoRA path decodes several times
slower than the merged weights), while on a GPU it goes to vLLM with its adapter as a ``LoRARequest``. Item-scored runs
(``output: item``) need only the last hidden state of each prompt: vLLM serves them from the merged checkpoint
as a pooling model (``VLLMEngine(runner="pooling")``), the hf engine with ``last_hidden``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmrec.adapters.bundle import Bundle, load_bundle
from llmrec.adapters.hybrid import HybridPrompter
from llmrec.adapters.representations import UserStates
from llmrec.adapters.task_config import TaskConfig
from llmrec.adapters.tasks import TaskExample, build_examples, prompt_example
from llmrec.catalog.catalog import Catalog
from llmrec.catalog.grounding import Grounding
from llmrec.data.builtin import load_dataset
from llmrec.data.dataset import Dataset
from llmrec.data.display import ranked_items, raw_user_id
from llmrec.data.splits import leave_one_out_split
from llmrec.devices import resolve_device
from llmrec.encoders.recommend import recommend
from llmrec.errors import LlmrecError
from llmrec.inference.answers import query_decoding
from llmrec.inference.engine import Engine, Request, SamplingConfig, require
from llmrec.inference.registry import engine_name, load_engine
from llmrec.progress import progress_bar
from llmrec.runs import best_checkpoint

SERVED_TASKS = ("rank", "explain", "query")
RANK_CHUNK = 32  # examples scored per call: the progress bar's step


class LLMRecommender:
    """Ranks and answers task examples with an LLM on an engine (see the module docstring).

    Build one with :meth:`from_run` (an ``llmrec sft`` or ``llmrec rl`` run) or :meth:`zero_shot` (a base LLM,
    text prompts).
    """

    def __init__(
        self,
        engine: Engine,
        task: TaskConfig,
        dataset: Dataset,
        bundle: Bundle | None = None,
        tokenizer: Any = None,
        adapter_merged: bool = False,
    ) -> None:
        self.engine = engine
        self.task = task
        self.dataset = dataset
        self.bundle = bundle
        self.catalog = Catalog.from_dataset(dataset)
        self.prompter: HybridPrompter | None = None
        self.adapter_merged = adapter_merged  # the engine's weights already hold the run's LoRA
        self.user_states: UserStates | None = None  # user_vector tasks: the encoder's state after a history
        if task.user_vector:
            if bundle is None or not bundle.encoder:
                raise LlmrecError("a user_vector task is served from an LLM run whose recipe names its encoder run")
            self.user_states = UserStates(bundle.encoder, dataset)
            if bundle.items is not None:
                self.user_states.check_items(bundle.items, str(bundle.run))
        if bundle is not None and bundle.projector is not None and bundle.items is not None:
            if bundle.items.num_items != dataset.num_items:
                raise LlmrecError(
                    f"{bundle.run}: trained on {bundle.items.num_items:,} items but {dataset.path} has "
                    f"{dataset.num_items:,}; serve it on the dataset it was trained on"
                )
            require(engine, "input_embedding", "serving a run with item vectors (prompt embeddings)")
            embedding = engine.input_embedding()
            if tokenizer is None:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(engine.model)
            prior = self.task.prior
            self.prompter = HybridPrompter(tokenizer, embedding, bundle.projector.eval(), bundle.items, prior=prior)

    @classmethod
    def from_run(
        cls, run: Path | str, engine: str = "hf", checkpoint: Path | str | None = None, **engine_options: Any
    ) -> LLMRecommender:
        """Serve a finished LLM run on ``engine`` (``hf``, ``vllm`` or ``auto``) with its adapter and projector
        (those of ``checkpoint``, one of its checkpoint directories, when given)."""
        bundle = load_bundle(run, checkpoint)
        engine = engine_name(engine)
        model, merged = bundle.base_model, False
        if engine == "vllm" and (bundle.projector is not None or resolve_device("auto") == "cpu"):
            model, merged = str(merged_checkpoint(bundle)), True
            if bundle.task.output == "item":  # only the last hidden state is needed: a pooling model
                engine_options.setdefault("runner", "pooling")
        elif engine == "vllm":
            engine_options.setdefault("enable_lora", True)
            engine_options.setdefault("max_lora_rank", max(8, bundle.lora_rank))
        loaded = load_engine(engine, model, **engine_options)
        tokenizer = getattr(loaded, "tokenizer", None)
        try:
            return cls(loaded, bundle.task, load_dataset(bundle.dataset), bundle, tokenizer, merged)
        except BaseException:
            loaded.close()  # a refused run leaves no engine (a vLLM server process) behind
            raise

    @classmethod
    def zero_shot(
        cls, task: TaskConfig, dataset: str = "ml-100k", model: str | None = None, engine: str = "hf", **options: Any
    ) -> LLMRecommender:
        """A base LLM with text-only prompts of ``task`` (no adapter, no item vectors); ``output`` must be
        ``verbalizer`` or ``generative`` (``item`` scores by projected item vectors, which a base LLM lacks)."""
        if task.output == "item":
            raise LlmrecError(
                "a zero-shot LLM has no projector to score the candidates' item vectors with: give the task "
                "output 'verbalizer' or 'generative', not 'item'"
            )
        task = task.titles_only()
        loaded = load_engine(engine, model, **options)
        return cls(loaded, task, load_dataset(dataset), None, getattr(loaded, "tokenizer", None))

    @property
    def verbalizer(self) -> bool:
        """Whether the answer is the best-scored candidate (labels or item vectors) rather than a decoded title."""
        return self.task.output != "generative"

    @property
    def lora(self) -> str | None:
        """The adapter each request applies (none for a base LLM, or when the engine's weights hold it)."""
        return str(self.bundle.lora) if self.bundle is not None and not self.adapter_merged else None

    @property
    def query_grounding(self) -> tuple[Grounding | None, int]:
        """How a ``query`` run writes its query line: ``(None, 1)`` freely, or ``(Grounding, n)``: ``n`` catalog
        titles, as its RL rollouts did (``grounding: catalog``)."""
        if self.bundle is None:
            return None, 1
        return query_decoding(self.catalog, self.bundle.grounding, self.bundle.query_titles)

    def request(self, example: TaskExample, grounded: bool = False) -> Request:
        """The engine request of one example: hybrid prompts as ``prompt_embeds``, others as messages."""
        lora = self.lora
        grounding = None
        if grounded and example.candidates:
            grounding = Grounding(self.catalog, candidates=example.candidates, history=example.history)
        if example.item_ids:
            if self.prompter is None:
                raise LlmrecError("hybrid examples need a run with a projector; build examples with item_text title")
            with torch.no_grad():
                embeds = self.prompter(example.prompt, example.item_ids, example.user_vectors)
            return Request(prompt_embeds=embeds, lora=lora, grounding=grounding)
        return Request(messages=example.prompt, lora=lora, grounding=grounding)

    def rank(self, examples: list[TaskExample]) -> np.ndarray:
        """``[E, C]`` scores of each example's candidates (higher is better): each label's or title's
        log-probability as the complete answer, or (output item) the candidate's vector score."""
        if any(not e.candidates for e in examples):
            raise LlmrecError("ranking needs examples with candidates (task rank or explain)")
        requests = [self.request(e) for e in examples]
        if self.task.output == "item":
            return self._item_scores(examples, requests)
        titles = self.dataset.titles
        answers = [e.labels if self.verbalizer else [str(titles[c]) for c in e.candidates] for e in examples]
        scores = self.engine.score(requests, answers)
        out = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(out).all():
            raise FloatingPointError("non-finite candidate scores from the engine; the model is broken")
        return out

    def rank_split(self, which: str, limit: int = 0, min_len: int = 3) -> tuple[list[TaskExample], np.ndarray]:
        """The ``which`` (``valid`` or ``test``) examples of the dataset's leave-one-out split (the first ``limit``
        users when ``limit`` > 0; c20 candidates) and their ``[E, 20]`` scores from :meth:`rank`."""
        split = leave_one_out_split(self.dataset, min_len=min_len)
        if self.bundle is not None and self.bundle.facts.get("split_fingerprint") != split.fingerprint():
            raise LlmrecError(f"{self.bundle.run}: the dataset changed since this run was trained")
        examples = build_examples(self.dataset, split, which, self.task, self.user_states)
        if limit:
            examples = examples[:limit]
        scores = []
        with progress_bar(len(examples), f"c20 {which}", unit="user") as bar:
            for start in range(0, len(examples), RANK_CHUNK):
                chunk = examples[start : start + RANK_CHUNK]
                scores.append(self.rank(chunk))
                bar.update(len(chunk))
        return examples, np.concatenate(scores) if scores else np.zeros((0, 0))

    def _item_scores(self, examples: list[TaskExample], requests: list[Request]) -> np.ndarray:
        """Item-scored ranking: each prompt's last hidden state dotted with its candidates' projected vectors."""
        if self.prompter is None:
            raise LlmrecError("task output 'item' needs a run with a projector (the candidates' vectors)")
        require(self.engine, "last_hidden", "ranking by item vectors (task output item)")
        states = self.engine.last_hidden(requests)  # (E, H)
        candidates = torch.tensor([e.candidates for e in examples], dtype=torch.long)  # (E, C)
        users = torch.tensor([e.user_vectors[0] for e in examples]) if self.prompter.prior else None  # (E, D)
        with torch.no_grad():
            out = self.prompter.score_candidates(states, candidates, users).double().numpy()
        if not np.isfinite(out).all():
            raise FloatingPointError("non-finite candidate scores; the model is broken")
        return out

    def answer(self, examples: list[TaskExample], scores: np.ndarray | None = None) -> list[int | None]:
        """One recommended item per example: the best-scored candidate (verbalizer and item, from ``scores`` or a
        fresh :meth:`rank`), or the title decoded greedily under the candidates' grounding (generative)."""
        if self.verbalizer:
            scores = self.rank(examples) if scores is None else scores
            return [e.candidates[int(np.argmax(row))] for e, row in zip(examples, scores, strict=True)]
        params = SamplingConfig(max_new_tokens=64)
        results = self.engine.generate([self.request(e, grounded=True) for e in examples], params)
        return [r.completions[0].item_id for r in results]

    def close(self) -> None:
        """Free the engine."""
        self.engine.close()


def merged_checkpoint(bundle: Bundle) -> Path:
    """The run's LoRA merged into its base model, as a checkpoint directory ``RUN/merged/`` (built once; rebuilt
    when the adapter's weights change)."""
    import hashlib
    import json
    import shutil

    weights = bundle.lora / "adapter_model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    out = bundle.run / "merged"
    stamp = out / "llmrec-merged.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("adapter_sha256") == digest:
        return out
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = bundle.run / ".merged.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    base = AutoModelForCausalLM.from_pretrained(bundle.base_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(bundle.lora)).merge_and_unload()
    merged.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(bundle.base_model).save_pretrained(str(tmp))
    (tmp / stamp.name).write_text(json.dumps({"adapter_sha256": digest, "base_model": bundle.base_model}) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def retrieve_candidates(
    dataset: Dataset, user: int, count: int, encoder_run: Path | str | None = None
) -> tuple[list[int], str]:
    """``count`` items ``user`` (internal id) has not interacted with, to rerank: an encoder run's top items
    after the user's history, or (without a run) the most popular items; returns them and the retriever's name."""
    if encoder_run is not None:
        rows = recommend(Path(encoder_run), f"#{user}", k=count)["recommendations"]
        return [int(r["item_id"]) for r in rows], f"encoder {encoder_run}"
    seen = set(dataset.sequences[user].tolist())
    counts = np.bincount(np.concatenate(dataset.sequences), minlength=dataset.num_items + 1)
    order = [int(i) for i in np.argsort(-counts[1:], kind="stable") + 1 if int(i) not in seen]
    return order[:count], "popularity"


def recommend_llm(
    recommender: LLMRecommender, user: str, k: int = 10, encoder_run: Path | str | None = None
) -> dict[str, Any]:
    """The LLM's top-``k`` for ``user`` (raw id, or ``#N``) after their whole history, every one a catalog item.

    ``rank`` and ``explain`` runs rerank retrieved candidates (:func:`retrieve_candidates`, as many as the task
    shows): by each candidate's score, or (explain) by reasoning generation, whose supporting rationale comes
    along; a ``query`` run writes a search query that its retriever runs over the catalog (items the user already
    has left out), the query coming along."""
    dataset = recommender.dataset
    if recommender.task.task not in SERVED_TASKS:
        raise LlmrecError(
            f"recommend serves runs of task {', '.join(SERVED_TASKS)}; the run's task is {recommender.task.task!r}"
        )
    uid = dataset.user_id(user)
    history = dataset.sequences[uid].tolist()
    extra: dict[str, Any] = {}
    if recommender.task.task == "query":
        items, scores, retriever, extra = _by_query(recommender, uid, history, k)
    else:
        count = recommender.task.num_candidates
        if encoder_run is None and recommender.bundle is not None and recommender.bundle.encoder:
            run = Path(recommender.bundle.encoder)
            encoder_run = run if best_checkpoint(run).exists() else None
        candidates, retriever = retrieve_candidates(dataset, uid, count, encoder_run)
        if recommender.task.task == "explain":
            items, scores, extra = _by_reasoning(recommender, history, candidates, k)
        else:
            example = prompt_example(dataset, recommender.task, uid, history, candidates, recommender.user_states)
            ranked = recommender.rank([example])[0]
            order = np.argsort(-ranked, kind="stable")[:k]
            items, scores = [candidates[i] for i in order], ranked[order].tolist()
    run = str(recommender.bundle.run) if recommender.bundle is not None else None
    return {
        "user_id": uid,
        "raw_id": raw_user_id(dataset, uid),
        "history_length": len(history),
        "run": run,
        "candidates_from": retriever,
        "recommendations": ranked_items(dataset, items, scores),
        **extra,
    }


def _by_reasoning(
    recommender: LLMRecommender, history: list[int], candidates: list[int], k: int
) -> tuple[list[int], list[float], dict[str, Any]]:
    """An explain run's top-``k`` of ``candidates``: reasoning generation's ranking, and its rationale."""
    from llmrec.inference.reasoning import ReasoningConfig, ReasoningTask, reason

    counts = [int(recommender.dataset.item_users[i]) for i in candidates] if recommender.task.counts else None
    shown = history[-recommender.task.max_history :]
    task = ReasoningTask(recommender.catalog, shown, candidates, recommender.lora, counts)
    config = ReasoningConfig(marker=recommender.task.marker)
    result = reason(recommender.engine, [task], config)[0]
    top = result.ranking[:k]
    return [r.item_id for r in top], [r.score for r in top], {"rationale": result.rationale}


def _by_query(
    recommender: LLMRecommender, uid: int, history: list[int], k: int
) -> tuple[list[int], list[float], str, dict[str, Any]]:
    """A query run's top-``k``: the LLM's search query (greedy) run through the run's retriever."""
    from llmrec.catalog.retrievers import make_retriever
    from llmrec.inference.answers import structured_answers

    bundle = recommender.bundle
    name = bundle.retriever if bundle is not None else "bm25"
    example = prompt_example(recommender.dataset, recommender.task, uid, history, [])
    grounding, titles = recommender.query_grounding
    rationale, query = structured_answers(
        recommender.engine, [example.prompt], recommender.lora, recommender.task.marker, grounding=grounding,
        titles=titles,
    )[0]  # fmt: skip
    retriever = make_retriever(name, recommender.dataset, bundle.encoder if bundle is not None else None, "cpu")
    seen = set(history)
    found = [i for i in retriever.search([query], k + len(seen))[0] if i not in seen][:k]
    scores = retriever.scores(query)
    return found, [float(scores[i]) for i in found], f"{name} query", {"query": query, "rationale": rationale}
