"""Task datasets on real ML-100K: counts, no leakage of valid/test items into training, the c20 candidates for
evaluation, verbalizer labels, hybrid placeholders in item order, determinism and template checks."""

import re
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from llmrec.adapters import PLACEHOLDER
from llmrec.adapters.task_config import TaskConfig
from llmrec.adapters.tasks import LETTERS, build_examples
from llmrec.data.dataset import read_dataset, write_dataset
from llmrec.data.splits import leave_one_out_split
from llmrec.errors import LlmrecError
from llmrec.ranking.protocols import c20_candidates

# A line of a prompt that shows one item: "- Title" or "C. Title", then the placeholder for hybrid items.
ITEM_LINE = re.compile(r"^(?:- |[A-Z]\. )(.*) <item-emb>$", re.MULTILINE)


@pytest.fixture(scope="module")
def split(ml100k):
    return leave_one_out_split(ml100k)


@pytest.fixture(scope="module")
def rank_train(ml100k, split):
    return build_examples(ml100k, split, "train", TaskConfig())


@pytest.fixture(scope="module")
def head(ml100k, tmp_path_factory):
    """The first 40 users of ML-100K (same item table): every training position stays cheap to build."""
    kept = ml100k.interactions[ml100k.interactions["user_id"] <= 40]
    path = tmp_path_factory.mktemp("head") / "ml-100k-head"
    write_dataset(path, kept, ml100k.items, ml100k.users[ml100k.users["user_id"] <= 40], {"name": "ml-100k-head"})
    dataset = read_dataset(path)
    return dataset, leave_one_out_split(dataset)


def position_in_training(split, example):
    """Where the target sits in its user's sequence, checked to be inside the training prefix."""
    position = int(np.flatnonzero(split.sequences[example.user] == example.target)[0])
    assert 1 <= position < split.train_len[example.user]
    assert example.position == position
    return position


def test_train_examples_are_the_last_positions_of_each_training_prefix(ml100k, split, rank_train):
    expected = sum(min(3, max(0, int(n) - 1)) for n in split.train_len)
    assert len(rank_train) == expected == 943 * 3
    per_user = Counter(e.user for e in rank_train)
    assert set(per_user.values()) == {3}
    for example in rank_train:
        position = position_in_training(split, example)
        assert position >= split.train_len[example.user] - 3
        assert example.history == split.sequences[example.user][max(0, position - 10) : position].tolist()
        assert len(example.candidates) == 20 and example.answer == ml100k.titles[example.target]
        assert example.labels == [] and example.item_ids == []
        [message] = example.prompt
        assert message["role"] == "user" and PLACEHOLDER not in message["content"]
        shown = message["content"].split("\n")
        assert all(f"- {ml100k.titles[i]}" in shown for i in example.history + example.candidates)
    fields = {"user", "history", "candidates", "target", "prompt", "item_ids", "answer", "labels", "user_vectors"}
    fields |= {"position", "counts"}
    assert set(rank_train[0].as_row()) == fields


def test_max_history_keeps_the_most_recent_items(ml100k, split):
    for example in build_examples(ml100k, split, "valid", TaskConfig(task="next", max_history=3)):
        sequence = split.sequences[example.user]
        assert example.history == sequence[: len(sequence) - 2][-3:].tolist()


@pytest.mark.parametrize("task", ["rank", "next", "explain"])
def test_no_valid_or_test_item_reaches_a_training_example(head, task):
    dataset, split = head
    examples = build_examples(dataset, split, "train", TaskConfig(task=task, examples_per_user=0))
    # Every position with at least one item of history, in every training prefix.
    assert len(examples) == sum(max(0, int(n) - 1) for n in split.train_len) > 3000
    held_out = {user: set() for user in range(1, 41)}
    for held in (split.valid, split.test):
        for user, target in zip(held.users.tolist(), held.targets.tolist(), strict=True):
            held_out[user].add(target)
    assert all(len(items) == 2 for items in held_out.values())
    for example in examples:
        position_in_training(split, example)
        shown = {*example.history, example.target, *example.candidates}
        assert not shown & held_out[example.user]
        assert (len(example.candidates) == 20) == (task != "next")


def test_train_candidates_hold_the_target_once_among_unseen_items_at_a_uniform_position(split, rank_train):
    for example in rank_train:
        assert len(set(example.candidates)) == 20 and example.candidates.count(example.target) == 1
        seen = set(split.sequences[example.user].tolist())
        assert not (set(example.candidates) - {example.target}) & seen
    positions = Counter(e.target_index for e in rank_train)
    assert len(positions) == 20 and min(positions.values()) > 2829 / 20 / 2


@pytest.mark.parametrize("which", ["valid", "test"])
def test_evaluation_examples_carry_the_c20_candidates(ml100k, split, which):
    examples = build_examples(ml100k, split, which, TaskConfig(max_history=20))
    evaluated = split.eval_set(which)
    c20 = c20_candidates(split, which, ml100k.num_items, ml100k.path / "splits")
    assert [e.user for e in examples] == evaluated.users.tolist()
    assert [e.target for e in examples] == evaluated.targets.tolist()
    for example, cutoff, candidates in zip(examples, evaluated.cutoffs, c20, strict=True):
        assert set(example.candidates) == set(candidates.tolist()) and len(example.candidates) == 20
        assert example.history == split.sequences[example.user][max(0, cutoff - 20) : cutoff].tolist()
    if which == "test":  # the test history ends with the validation target
        assert [e.history[-1] for e in examples] == split.valid.targets.tolist()
    assert len(Counter(e.target_index for e in examples)) == 20  # the target is not always first
    nexts = build_examples(ml100k, split, which, TaskConfig(task="next"))
    assert [e.target for e in nexts] == evaluated.targets.tolist() and not any(e.candidates for e in nexts)


def test_verbalizer_labels_and_answers(ml100k, split):
    config = TaskConfig(output="verbalizer", examples_per_user=1)
    for which in ("train", "test"):
        examples = build_examples(ml100k, split, which, config)
        assert len(examples) == 943
        for example in examples:
            assert example.labels == list(LETTERS[:20]) == list("ABCDEFGHIJKLMNOPQRST")
            assert example.answer == example.labels[example.target_index]
            lines = example.prompt[0]["content"].split("\n")
            for label, item in zip(example.labels, example.candidates, strict=True):
                assert f"{label}. {ml100k.titles[item]}" in lines
            assert "letter" in lines[-1]


@pytest.mark.parametrize(
    "task, output", [("rank", "generative"), ("rank", "verbalizer"), ("next", "generative"), ("explain", "generative")]
)
def test_hybrid_prompts_have_one_placeholder_per_item_in_prompt_order(ml100k, split, task, output):
    config = TaskConfig(task=task, output=output, item_text="hybrid", examples_per_user=1)
    for which in ("train", "valid"):
        for example in build_examples(ml100k, split, which, config):
            text = example.prompt[0]["content"]
            assert example.item_ids == example.history + example.candidates
            assert text.count(PLACEHOLDER) == len(example.item_ids) == len(example.history) + len(example.candidates)
            assert len(example.candidates) == (0 if task == "next" else 20)
            assert ITEM_LINE.findall(text) == [ml100k.titles[i] for i in example.item_ids]


def test_vector_prompts_show_each_item_as_its_placeholder_alone(ml100k, split):
    config = TaskConfig(output="verbalizer", item_text="vector", examples_per_user=1, system="You rank movies.")
    titled = build_examples(ml100k, split, "valid", replace(config, item_text="hybrid"))
    for which in ("train", "valid"):
        for example in build_examples(ml100k, split, which, config):
            system, user = example.prompt
            assert system == {"role": "system", "content": "You rank movies."} and user["role"] == "user"
            text = user["content"]
            assert example.item_ids == example.history + example.candidates
            assert text.count(PLACEHOLDER) == len(example.item_ids)
            for label in example.labels:
                assert f" {label}{PLACEHOLDER}" in text
            assert example.answer == example.labels[example.target_index]
    # No titles: only the vectors tell the items apart, so every prompt with 10 history items reads the same.
    vector = build_examples(ml100k, split, "valid", config)
    assert len({e.prompt[1]["content"] for e in vector if len(e.history) == 10}) == 1
    # Same candidates and answers as the titled prompts, in a prompt a fraction of the length.
    assert [(e.candidates, e.answer) for e in vector] == [(e.candidates, e.answer) for e in titled]
    assert sum(len(e.prompt[-1]["content"]) for e in vector) < 0.5 * sum(len(e.prompt[-1]["content"]) for e in titled)


def test_user_vectors_are_the_encoders_state_after_the_whole_prefix(ml100k, split, sasrec_run):
    import torch

    from llmrec.adapters import USER_PLACEHOLDER, UserStates, item_representation
    from llmrec.encoders.run import load_best
    from llmrec.ranking.protocols import history_matrix

    states = UserStates(sasrec_run, ml100k)
    config = TaskConfig(output="verbalizer", item_text="vector", user_vector=True, max_history=3, examples_per_user=1)
    test = build_examples(ml100k, split, "test", config, states)
    assert all(e.prompt[-1]["content"].count(USER_PLACEHOLDER) == 1 and len(e.user_vectors) == 1 for e in test)
    # The state comes from everything before the target (up to the encoder's length), not the 3 items shown: its
    # dot products with the candidates' item vectors are the encoder's own c20 scores.
    encoder = load_best(sasrec_run).eval()
    evals = split.eval_set("test")
    seqs = torch.from_numpy(history_matrix(split, evals, encoder.config.max_len))[:50]
    candidates = torch.tensor([e.candidates for e in test[:50]])
    with torch.no_grad():
        expected = encoder.score(seqs, candidates)  # (50, 20)
    items = item_representation("id", ml100k, encoder_run=sasrec_run).vectors
    users = torch.tensor([e.user_vectors[0] for e in test[:50]])
    torch.testing.assert_close(torch.einsum("bh,bch->bc", users, items[candidates]), expected, rtol=1e-4, atol=1e-4)
    # Training examples: the state after the prefix before each training target.
    train = build_examples(ml100k, split, "train", config, states)[:20]
    prefixes = [split.sequences[e.user][: split.train_len[e.user] - 1] for e in train]
    torch.testing.assert_close(torch.tensor([e.user_vectors[0] for e in train]), states(prefixes))
    with pytest.raises(LlmrecError, match="need the encoder's user states"):
        build_examples(ml100k, split, "test", config)
    with pytest.raises(LlmrecError, match="needs item vectors in the prompt"):
        TaskConfig(user_vector=True)
    with pytest.raises(LlmrecError, match="shows 0 <user-emb>"):
        build_examples(ml100k, split, "test", replace(config, template="rank_candidates_labelled"), states)


def test_explain_asks_for_a_rationale_and_answers_the_title(ml100k, split):
    for example in build_examples(ml100k, split, "test", TaskConfig(task="explain", marker="Final answer:"))[:50]:
        assert '"Final answer:"' in example.prompt[0]["content"] and "reason" in example.prompt[0]["content"]
        assert example.answer == ml100k.titles[example.target] and len(example.candidates) == 20


def test_examples_are_deterministic_given_the_seed(ml100k, split, rank_train):
    again = build_examples(ml100k, split, "train", TaskConfig())
    assert [e.as_row() for e in again] == [e.as_row() for e in rank_train]
    other = build_examples(ml100k, split, "train", TaskConfig(seed=1))
    assert [e.target for e in other] == [e.target for e in rank_train]
    assert [e.candidates for e in other] != [e.candidates for e in rank_train]
    # Evaluation examples do not depend on the seed: every model meets the same prompts.
    valid = [build_examples(ml100k, split, "valid", TaskConfig(seed=s)) for s in (0, 1)]
    assert [e.as_row() for e in valid[0]] == [e.as_row() for e in valid[1]]


@pytest.mark.parametrize(
    "config, message",
    [
        (TaskConfig(item_text="hybrid", template="rank_candidates"), "one <item-emb> after each item title"),
        (TaskConfig(template="rank_candidates_hybrid"), "placeholders but item_text is 'title'"),
        (TaskConfig(template="next_item"), "does not show every history item and every candidate"),
        (TaskConfig(output="verbalizer", template="rank_candidates"), "label letter"),
        (TaskConfig(template="no_such_template"), "no prompt template 'no_such_template'"),
        (
            TaskConfig(output="verbalizer", item_text="vector", template="rank_candidates_labelled_hybrid"),
            "without its title",
        ),
        (TaskConfig(output="verbalizer", template="rank_candidates_labelled_vector"), "item_text is 'title'"),
    ],
)
def test_a_template_that_does_not_fit_the_config_is_refused_before_building(ml100k, split, config, message):
    with pytest.raises(LlmrecError, match=re.escape(message)):
        build_examples(ml100k, split, "train", config)


def test_bad_arguments_are_clear_errors(ml100k, split, head):
    for fields, message in [
        ({"task": "chat"}, "task must be one of rank, next, explain"),
        ({"task": "next", "output": "verbalizer"}, "rank task only"),
        ({"item_text": "image"}, "item_text must be one of title, hybrid, vector"),
        ({"num_candidates": 1}, "at least 2"),
        ({"output": "verbalizer", "num_candidates": 30}, "at most 26"),
        ({"examples_per_user": -1}, "examples_per_user"),
        ({"max_history": 0}, "max_history"),
    ]:
        with pytest.raises(LlmrecError, match=message):
            TaskConfig(**fields)
    with pytest.raises(LlmrecError, match="rank verbalizer only"):
        build_examples(ml100k, split, "train", TaskConfig(task="next", item_text="vector"))
    with pytest.raises(LlmrecError, match="train, valid, test"):
        build_examples(ml100k, split, "eval", TaskConfig())
    with pytest.raises(LlmrecError, match="make the split from this dataset"):
        build_examples(head[0], split, "train", TaskConfig())


def test_query_completions_state_the_history_then_the_targets_title_as_the_query(ml100k, split):
    from llmrec.adapters.tasks import query_completions
    from llmrec.inference.answers import parse_answer

    examples = build_examples(ml100k, split, "train", TaskConfig(task="query", examples_per_user=1))[:50]
    completions = query_completions(ml100k, examples, "Answer:")
    for example, completion in zip(examples, completions, strict=True):
        assert parse_answer(completion) == [ml100k.titles[example.target]]
        assert completion.startswith(f"They recently enjoyed {ml100k.titles[example.history[-1]]}.")
    # Hand-computed: three items whose genres are Comedy Drama, Drama, Action Drama: Drama (3), then Comedy (the
    # first of the words seen once), never the release year.
    by_genres = {g: int(ml100k.items.loc[ml100k.items["class"] == g, "item_id"].iloc[0]) for g in
                 ("Comedy Drama", "Drama", "Action Drama")}  # fmt: skip
    made = replace(examples[0], history=list(by_genres.values()))
    (completion,) = query_completions(ml100k, [made], "Answer:")
    assert "Most of their items are Drama and Comedy.\nAnswer:\n" in completion


def test_attributes_follow_each_history_title_and_leave_candidates_and_answers_alone(ml100k, split):
    from llmrec.adapters.tasks import prompt_example

    config = TaskConfig(task="query", attributes=True, max_history=3)
    text = prompt_example(ml100k, config, 1, [50, 1], []).prompt[0]["content"]  # Star Wars, then Toy Story
    assert text.count("\n- ") == 2
    assert "- Star Wars (release year: 1977; class: Action Adventure Romance Sci-Fi War)\n" in text
    assert "- Toy Story (release year: 1995; class: Animation Children's Comedy)\n" in text
    plain = build_examples(ml100k, split, "test", TaskConfig(task="explain"))[:20]
    shown = build_examples(ml100k, split, "test", TaskConfig(task="explain", attributes=True))[:20]
    for without, with_ in zip(plain, shown, strict=True):
        assert with_.answer == without.answer == ml100k.titles[with_.target]
        listed = with_.prompt[0]["content"].split("Candidates:\n")[1].split("\n\n")[0].splitlines()
        assert listed == [f"- {ml100k.titles[item]}" for item in with_.candidates]  # named as the answer names it
        for item in with_.history:
            assert ml100k.described_titles[item] in with_.prompt[0]["content"]
            assert ml100k.described_titles[item] not in without.prompt[0]["content"]
    with pytest.raises(LlmrecError, match="item_text vector shows none"):
        TaskConfig(output="verbalizer", item_text="vector", attributes=True)


def candidate_lines(example) -> list[str]:
    text = example.prompt[-1]["content"]
    return re.split(r"Candidates[^\n]*:\n", text)[1].split("\n\n")[0].splitlines()


def test_counts_follow_each_candidate_and_count_the_training_prefixes_alone(ml100k, split):
    from llmrec.adapters.tasks import prompt_example
    from llmrec.data.dataset import user_counts

    assert ml100k.item_users[50] == 583 and ml100k.item_users[1] == 452  # Star Wars, Toy Story: ML-100K's counts
    served = prompt_example(ml100k, TaskConfig(task="explain", counts=True), 1, [2], [50, 1])
    assert candidate_lines(served) == ["- Star Wars (chosen by 583 users)", "- Toy Story (chosen by 452 users)"]
    assert "Candidates, each with how many users chose it:" in served.prompt[-1]["content"]
    train = user_counts(split.train_sequences(), ml100k.num_items)
    assert train.sum() == sum(len(set(s.tolist())) for s in split.train_sequences())
    for which in ("train", "test"):
        plain = build_examples(ml100k, split, which, TaskConfig(task="explain"))[:30]
        counted = build_examples(ml100k, split, which, TaskConfig(task="explain", counts=True))[:30]
        for without, example in zip(plain, counted, strict=True):
            assert example.candidates == without.candidates and example.answer == without.answer
            lines = [f"- {ml100k.titles[i]} (chosen by {train[i]} user{'' if train[i] == 1 else 's'})"
                     for i in example.candidates]  # fmt: skip
            assert candidate_lines(example) == lines
            if which == "test":  # the user's own test item is not counted (an ML-100K user rates an item once)
                assert train[example.target] < ml100k.item_users[example.target]
    with pytest.raises(LlmrecError, match="counts follow each candidate's title"):
        TaskConfig(task="query", counts=True)
    with pytest.raises(LlmrecError, match="item_text 'vector'"):
        TaskConfig(output="verbalizer", item_text="vector", counts=True)


def test_the_keyword_query_prompt_asks_for_words_the_bm25_index_matches(ml100k):
    from llmrec.adapters.tasks import prompt_example
    from llmrec.catalog.retrievers import BM25Retriever

    config = TaskConfig(task="query", attributes=True, max_history=2, template="search_keywords")
    text = prompt_example(ml100k, config, 1, [50, 1], []).prompt[0]["content"]  # Star Wars, then Toy Story
    assert "- Toy Story (release year: 1995; class: Animation Children's Comedy)\n" in text
    example = text.split(f"\n{config.marker}\n")[-1].strip()  # the prompt's own example of a query line
    assert example and "\n" not in example
    found = BM25Retriever(ml100k).search([example], 20)[0]
    assert len(found) == 20  # genre words and a year are indexed: the example retrieves a full list
    words = set(example.lower().split())
    for item in found:
        assert words & set(ml100k.described_titles[item].lower().replace(";", " ").replace(")", " ").split())
