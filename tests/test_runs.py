"""The run directory: kinds and formats read back or refused with what to do, atomic writes, metrics merged."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from llmrec.errors import LlmrecError
from llmrec.runs import (
    RUN_FORMATS,
    atomic_write_text,
    numbered_checkpoints,
    read_config,
    read_metrics,
    run_kind,
    update_metrics,
    write_config,
)


def test_a_config_is_read_back_with_its_facts(tmp_path: Path) -> None:
    write_config(tmp_path, "llm-sft", {"dataset": "ml-100k"}, {"base_model": "m"})
    values, facts = read_config(tmp_path, ("llm-sft", "llm-rl"))
    assert values == {"dataset": "ml-100k"}
    assert facts["kind"] == "llm-sft" and facts["run_format"] == RUN_FORMATS["llm-sft"] and facts["base_model"] == "m"
    assert run_kind(tmp_path) == "llm-sft" and run_kind(tmp_path / "nothing") is None


def test_runs_of_another_kind_or_format_are_refused(tmp_path: Path) -> None:
    write_config(tmp_path, "encoder", {"model": "sasrec"})
    with pytest.raises(LlmrecError, match="not an LLM-recommender run \\(it is an encoder run\\)"):
        read_config(tmp_path, ("llm-sft", "llm-rl"))
    values = yaml.safe_load((tmp_path / "config.yaml").read_text())
    values["run"]["run_format"] = 0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(LlmrecError, match="run format 0 is not .*`llmrec encoder train`"):
        read_config(tmp_path, ("encoder",))
    with pytest.raises(LlmrecError, match="no config.yaml"):
        read_config(tmp_path / "empty", ("encoder",))


def test_an_encoder_run_from_before_the_run_section_is_read(tmp_path: Path) -> None:
    """Encoder runs of format 2 kept ``run_format`` at the top level; their weights are the same format."""
    legacy = {"model": "sasrec", "dataset": "ml-100k", "run_format": 2, "llmrec_version": "0.1.0"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(legacy))
    values, facts = read_config(tmp_path, ("encoder",))
    assert values == {"model": "sasrec", "dataset": "ml-100k"} and facts["kind"] == "encoder"


def test_metrics_are_merged_and_files_replaced_whole(tmp_path: Path) -> None:
    assert read_metrics(tmp_path) == {}
    update_metrics(tmp_path, {"a": 1})
    assert update_metrics(tmp_path, {"b": 2}) == {"a": 1, "b": 2}
    atomic_write_text(tmp_path / "note.txt", "x")
    assert (tmp_path / "note.txt").read_text() == "x" and not list(tmp_path.glob(".*tmp"))
    (tmp_path / "metrics.json").write_text("{broken")
    with pytest.raises(LlmrecError, match="corrupted"):
        read_metrics(tmp_path)


def test_numbered_checkpoints_sort_by_step(tmp_path: Path) -> None:
    for name in ("checkpoint-10", "checkpoint-2", "checkpoint-x", "best"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    assert [p.name for p in numbered_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10"]
