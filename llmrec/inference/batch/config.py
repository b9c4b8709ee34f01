"""What a batch job runs: its task, files, dataset, grounding, chunking and sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmrec.errors import LlmrecError
from llmrec.inference.engine import SamplingConfig

TASKS = ("generate", "rank", "reason")
GREEDY_PATHS = (
    "reason samples several paths, and greedy decoding (temperature 0) would make them identical; "
    "give a temperature above 0 (the default for reason is 0.8) or 1 path"
)


def default_sampling(task: str) -> SamplingConfig:
    """Sampling of a task when none is given: greedy answers, or diverse rationales for ``reason``."""
    if task == "reason":
        return SamplingConfig(temperature=0.8, top_p=0.95, max_new_tokens=128)
    return SamplingConfig()


@dataclass
class BatchConfig:
    """What ``llmrec batch`` runs.

    Job: ``task``, ``input``, ``out``, ``dataset`` (item ids and titles for rank/reason, catalog for
    grounding), ``ground`` (``none`` or ``catalog``, for ``generate``), ``chunk_size`` (rows per engine call and
    per write), ``resume``. Prompts: ``template`` (for rank; reason uses ``reasoning.template``) and
    ``max_history`` (most recent history items shown). Sampling: ``sampling`` (default: greedy, 64 new tokens;
    for ``reason``: temperature 0.8, top-p 0.95 and 128 tokens per rationale); reasoning: ``paths``.
    """

    task: str
    input: Path
    out: Path
    dataset: str | None = None
    ground: str = "none"
    chunk_size: int = 256
    resume: bool = False
    template: str = "rank_candidates"
    max_history: int = 20
    paths: int = 4
    sampling: SamplingConfig | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise LlmrecError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.ground not in ("none", "catalog"):
            raise LlmrecError(f"--ground must be none or catalog, got {self.ground!r}")
        if self.ground == "catalog" and not self.dataset:
            raise LlmrecError("--ground catalog needs --dataset: the catalog to ground the answers to")
        if self.chunk_size < 1:
            raise LlmrecError(f"--chunk-size must be at least 1, got {self.chunk_size}")
        if self.sampling is None:
            self.sampling = default_sampling(self.task)
        if self.task == "reason" and self.paths > 1 and self.sampling.greedy:
            raise LlmrecError(GREEDY_PATHS)
        self.input, self.out = Path(self.input), Path(self.out)

    def check_paths(self) -> None:
        """Fail before any engine starts: the input must exist, the output only when resuming."""
        if not self.input.is_file():
            raise LlmrecError(f"{self.input}: no such input file")
        if self.out.exists() and not self.resume:
            raise LlmrecError(f"{self.out} exists; pass --resume to continue it, or choose another --out")

    @property
    def errors_path(self) -> Path:
        """Where bad rows are reported: ``OUT.errors.jsonl`` beside the output."""
        return self.out.with_name(self.out.name + ".errors.jsonl")
