"""Title tries, catalog resolution and the grounding report, on the real ML-100K titles and the default tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from llmrec.catalog.catalog import Catalog, normalise_title
from llmrec.catalog.grounding import Grounding, grounding_report
from llmrec.catalog.tries import TitleTrie, build_trie, catalog_trie, catalog_trie_path
from llmrec.errors import LlmrecError
from llmrec.models.defaults import resolve_model


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_model(None))


def test_random_walks_through_the_catalog_trie_always_spell_a_real_title(catalog, tokenizer) -> None:
    trie = catalog_trie(catalog, tokenizer)
    titles = set(catalog.titles)
    rng = np.random.default_rng(0)
    for _ in range(300):
        state, tokens = trie.root, []
        while True:
            allowed = trie.allowed(state)
            if not len(allowed):
                break
            token = int(rng.choice(allowed))
            tokens.append(token)
            state = trie.advance(state, token)
            assert state is not None
        assert tokens[-1] == tokenizer.eos_token_id
        title = trie.lookup(tokens)
        assert title in titles
        assert tokenizer.decode(tokens, skip_special_tokens=True) == title


def test_every_catalog_title_is_reachable_and_looks_up_to_itself(catalog, tokenizer) -> None:
    trie = catalog_trie(catalog, tokenizer)
    unique = list(dict.fromkeys(catalog.titles))
    assert len(trie.rows) == len(unique)
    encoded = tokenizer(unique, add_special_tokens=False)["input_ids"]
    for title, ids in zip(unique, encoded, strict=True):
        assert trie.lookup([*ids, trie.end_id]) == title
        assert trie.lookup(ids) is None  # not complete before the end token


def test_catalog_trie_is_cached_on_disk_and_reloads_identically(catalog, tokenizer, tmp_path) -> None:
    path = catalog_trie_path(catalog, tokenizer)
    assert path.exists()
    assert catalog_trie(catalog, tokenizer) is catalog_trie(catalog, tokenizer)
    loaded = TitleTrie.load(path)
    original = catalog_trie(catalog, tokenizer)
    assert np.array_equal(loaded.rows, original.rows) and loaded.keys == original.keys
    trie = build_trie(tokenizer, ["Toy Story", "Toy Story 2"])
    trie.save(tmp_path / "t.npz")
    again = TitleTrie.load(tmp_path / "t.npz")
    assert again.allowed(again.walk(tokenizer("Toy Story", add_special_tokens=False)["input_ids"])).tolist() == sorted(
        [tokenizer.eos_token_id, *tokenizer(" 2", add_special_tokens=False)["input_ids"][:1]]
    )


def test_duplicate_titles_share_one_trie_row_and_prefer_an_unseen_item() -> None:
    catalog = Catalog([1, 2, 3], ["Hamlet", "Hamlet", "Heat"])
    grounding = Grounding(catalog, history=[1])
    assert grounding.resolve_title("Hamlet").item_id == 2
    assert Grounding(catalog).resolve_title("Hamlet").item_id == 1
    assert Grounding(catalog, candidates=[1, 3]).resolve_title("Hamlet").item_id == 1


def test_free_text_resolution_says_which_path_resolved_it(catalog) -> None:
    exact = catalog.resolve("Toy Story")
    assert (exact.item_id, exact.resolved_by) == (1, "exact")
    lion = catalog.resolve("I would go with The Lion King.")
    assert lion.title == "Lion King, The" and lion.resolved_by == "contained"
    assert catalog.resolve("the lion king").resolved_by == "normalised"
    fuzzy = catalog.resolve("Toy Stroy")
    assert fuzzy.title == "Toy Story" and fuzzy.resolved_by == "fuzzy"
    assert catalog.resolve("a completely unrelated sentence about weather").item_id is None
    among = catalog.resolve("Toy Story", among=[50, 100])
    assert among.item_id is None


def test_normalise_title_handles_articles_years_and_accents() -> None:
    assert normalise_title("Amélie (2001)") == "amelie"
    assert normalise_title("Usual Suspects, The") == normalise_title("The Usual Suspects")


def test_grounding_rejects_empty_and_unknown_candidates(catalog) -> None:
    with pytest.raises(LlmrecError, match="empty candidate list"):
        Grounding(catalog, candidates=[])
    with pytest.raises(LlmrecError, match=r"not in the catalog ml-100k: \[99999\]"):
        Grounding(catalog, candidates=[1, 99999])
    with pytest.raises(LlmrecError, match="no item with id 0"):
        catalog.title(0)


def test_grounding_report_counts_validity_duplicates_and_history() -> None:
    report = grounding_report([[5, 5, 7], [None, 9]], histories=[[7], [1]])
    assert report == {"valid_ratio": 0.8, "duplicate_ratio": 0.25, "in_history_ratio": 0.25, "answers": 5}
    assert grounding_report([])["valid_ratio"] == 0.0


def test_a_100k_title_catalog_trie_is_compact_and_exact(tokenizer, tmp_path) -> None:
    rng = np.random.default_rng(1)
    words = ["Star", "Night", "Return", "Dark", "Love", "City", "Blue", "Last", "King", "Road", "River", "Ghost"]
    titles = [" ".join(rng.choice(words, size=rng.integers(1, 5))) + f" {i}" for i in range(100_000)]
    catalog = Catalog(np.arange(1, len(titles) + 1), titles, name="synthetic-100k")
    trie = catalog_trie(catalog, tokenizer)
    assert len(trie.rows) == 100_000 and trie.rows.nbytes < 20 * 2**20
    for index in rng.choice(len(titles), size=50, replace=False):
        ids = tokenizer(titles[index], add_special_tokens=False)["input_ids"]
        assert trie.lookup([*ids, trie.end_id]) == titles[index]
        assert Grounding(catalog).resolve_title(titles[index]).item_id == index + 1
