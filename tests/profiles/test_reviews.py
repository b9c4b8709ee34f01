"""Reviews given as JSON (``llmrec profiles update``, the server's review endpoint): the item looked up in a
dataset given by name or already loaded (with its catalog, as the server passes them) is the same item."""

from __future__ import annotations

import json

import pytest

from llmrec.catalog.catalog import Catalog
from llmrec.errors import LlmrecError
from llmrec.profiles.reviews import review_from_json


def test_a_loaded_dataset_and_its_catalog_find_the_item_a_dataset_name_finds(ml100k) -> None:
    text = json.dumps({"item": "toy story", "rating": 5, "text": "Still great."})
    by_name = review_from_json(text, "7", "ml-100k")
    loaded = review_from_json(text, "7", ml100k, Catalog.from_dataset(ml100k))
    assert loaded == by_name and loaded.title == "Toy Story"
    assert loaded.attributes == ml100k.attribute_texts[loaded.item_id] and "Animation" in loaded.attributes
    by_id = json.dumps({"item": f"#{loaded.item_id}", "rating": 5, "text": "Still great."})
    by_id = review_from_json(by_id, "7", ml100k)
    assert by_id == loaded  # the same user, item, rating and text: the same review id too
    with pytest.raises(LlmrecError, match="no item titled 'Toy Story 9'"):
        review_from_json(json.dumps({"item": "Toy Story 9"}), "7", ml100k)
