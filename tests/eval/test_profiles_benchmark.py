"""The profile benchmark's report (eval/profiles/benchmark.py): a validation-only run shows no test table and
says when its LLM rows were left out; a reported run names the prompt-token share of the chosen profile row on
test against the every-earlier-review row. Scoring itself runs in the benchmark (it needs the review sample)."""

from __future__ import annotations

import pytest

STAMP = {"date": "2026-12-06", "command": "python eval/profiles/benchmark.py", "machine": "2 CPU cores (x86_64)"}
BUILD = {"applied": 10, "failed": 0, "failed_now": 0, "extract_seconds_per_review": 0.3}


@pytest.fixture()
def bench(eval_script):
    return eval_script("profiles")


def entry(ndcg: float, tokens: float) -> dict:
    same = {"diff": 0.0, "low": 0.0, "high": 0.0, "beats": False}
    return {"hr@1": 0.1, "ndcg@5": 0.2, "ndcg@10": ndcg, "prompt_tokens": tokens,
            "vs_no_profile": {"hr@1": same, "ndcg@10": same}}  # fmt: skip


def section(rows: dict[str, float], splits: tuple[str, ...], chosen: str) -> dict:
    return {
        **STAMP, "build": BUILD, "chosen": chosen, "blend_weight": 0.1, "dislike_weight": 0.5,
        "facets_blend_weight": 0.2, "steps": {s: {"users": 3, "steps": 9} for s in splits},
        "rows": {name: {s: entry(ndcg, 40.0 if name.startswith("dense") else 400.0) for s in splits}
                 for name, ndcg in rows.items()},
    }  # fmt: skip


def test_a_validation_only_dense_report_has_no_test_table_and_says_the_llm_rows_were_left_out(bench) -> None:
    rows = {"dense-titles": 0.38, "dense-facets": 0.28, "dense-facets-blend": 0.39}
    text = bench.render({"reviews": section(rows, ("valid",), "dense-facets-blend")}, ("valid",))
    assert "### valid users (3 users, 9 steps)" in text and "### test users" not in text
    assert "(the LLM rows were left out)" in text
    assert bench.LABELS["dense-facets"] in text and bench.LABELS["llm-whole"] not in text
    assert "minus 0.5 times its best cosine with a disliked one; its blend puts weight 0.2" in text


def test_a_reported_run_gives_the_chosen_rows_token_share_on_test(bench) -> None:
    rows = {"llm-titles": 0.2, "llm-whole": 0.21, "dense-titles": 0.38, "dense-blend": 0.40}
    text = bench.render({"reviews": section(rows, ("valid", "test"), "dense-blend")})
    assert "### test users" in text
    assert "on test it uses 10% of the prompt tokens of the every-earlier-review row" in text  # 40 of 400
