"""``llmrec serve --engine openai`` over a real `vllm serve` of the default model (the set-up the README gives for
many concurrent chats): the official OpenAI client streams a turn token by token, and its cards are catalog items."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai import OpenAI

pytest.importorskip("vllm")
pytestmark = pytest.mark.requires_vllm


def test_the_agent_served_over_vllm_streams_grounded_cards(start_vllm, start_server, sasrec_run, ml100k, tmp_path):
    with start_vllm() as base_url:
        args = ["--dataset", "ml-100k", "--run", str(sasrec_run), "--engine", "openai", "--base-url", base_url]
        server = start_server([*args, "--max-tokens", "24"], tmp_path / "server.log").start()
        try:
            client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
            messages = [{"role": "user", "content": "recommend something for me"}]
            chunks = list(client.chat.completions.create(model="llmrec", messages=messages, user="196", stream=True))
        finally:
            server.stop()
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 1  # the opening sentence, then the model's tokens as vLLM streams them
    cards = [c.model_extra["llmrec"]["recommendations"] for c in chunks if "recommendations" in
             (c.model_extra or {}).get("llmrec", {})][0]  # fmt: skip
    history = set(ml100k.sequences[ml100k.user_id("196")].tolist())
    assert cards and all(ml100k.titles[c["item_id"]] == c["title"] and c["item_id"] not in history for c in cards)
    assert "Traceback" not in Path(tmp_path / "server.log").read_text()
