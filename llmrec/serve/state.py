"""What a server loads once at start and shares between requests: the dataset's catalog index (MiniLM vectors and
an encoder run), the engine behind a batching queue, the profile store, the chat model and the tool router."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmrec.errors import LlmrecError

LAST_ITEMS = 10_000  # users whose last recommended items the server remembers


@dataclass
class ServeConfig:
    """How ``llmrec serve`` runs.

    Data: ``dataset``, ``run`` (an encoder run for personal recommendations), ``db`` (the profile store URL).
    Model: ``engine`` (``hf``, or ``openai`` for a ``vllm serve`` behind it), ``model``, ``base_url``,
    ``device``. Limits: ``max_batch`` (generation requests batched together), ``max_queue`` (engine calls
    waiting or running, and chat turns in progress, before 429), ``max_body`` (bytes), ``max_tokens`` (per
    reply), ``timeout`` (seconds per request). Access: ``api_key`` (required by the routes that write, when set),
    ``cors_origins`` (none: closed).
    """

    dataset: str = "ml-100k"
    run: str | None = None
    db: str | None = None
    engine: str = "hf"
    model: str | None = None
    base_url: str | None = None
    device: str = "auto"
    max_batch: int = 8
    max_queue: int = 16
    max_body: int = 1 << 20
    max_tokens: int = 96
    timeout: float = 120.0
    api_key: str | None = None
    cors_origins: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.engine not in ("hf", "openai"):
            raise LlmrecError(
                f"llmrec serve runs on the hf engine, or on openai (a `vllm serve` behind it), not {self.engine!r}"
            )
        if min(self.max_batch, self.max_queue, self.max_body, self.max_tokens) < 1 or self.timeout <= 0:
            raise LlmrecError("serve limits must be positive")


class ServerState:
    """Everything loaded at start (see the module docstring); :meth:`close` frees it."""

    def __init__(self, config: ServeConfig) -> None:
        from llmrec.agent.chat_model import LlmrecChatModel
        from llmrec.agent.retriever import CatalogIndex
        from llmrec.agent.router import ToolRouter
        from llmrec.catalog.catalog import Catalog
        from llmrec.data.builtin import load_dataset
        from llmrec.inference.registry import load_engine
        from llmrec.inference.streaming import BatchedEngine

        self.config = config
        self.dataset = load_dataset(config.dataset)
        self.catalog = Catalog.from_dataset(self.dataset)
        self.index = CatalogIndex(self.dataset, config.run, config.device)
        self.router = ToolRouter(self.index.embedder)
        options: dict[str, Any] = {"base_url": config.base_url} if config.engine == "openai" else {}
        if config.engine == "hf":
            options["device"] = config.device
        raw = load_engine(config.engine, config.model, **options)
        if config.engine == "openai":  # the server behind batches by itself: up to max_batch calls go out at once
            self.engine = BatchedEngine(raw, max_batch=1, max_queue=config.max_queue, workers=config.max_batch)
        else:
            self.engine = BatchedEngine(raw, max_batch=config.max_batch, max_queue=config.max_queue)
        self.chat = LlmrecChatModel(engine=self.engine, max_tokens=config.max_tokens)
        self.store = None
        self.extractor = None
        self.last_items: OrderedDict[str, list[int]] = OrderedDict()
        self._lock = threading.Lock()
        if config.db:
            from llmrec.profiles.build import load_updater
            from llmrec.profiles.extractor import ReviewExtractor
            from llmrec.profiles.store import open_store

            self.store = open_store(config.db, load_updater(config.model, device=config.device))
            self.extractor = ReviewExtractor(self.engine)

    def context(self, user: str | None) -> Any:
        """The tools' context for one request's user (with the items last recommended to them, so that "why this
        one?" has an item to explain)."""
        from llmrec.agent.tools import UserContext

        last = self.last_items.get(user) if user is not None else None
        return UserContext(self.index, self.store, user, self.extractor, last, self._remember)

    def _remember(self, user: str | None, items: list[int]) -> None:
        if user is None:
            return
        with self._lock:
            self.last_items[user] = items
            self.last_items.move_to_end(user)
            while len(self.last_items) > LAST_ITEMS:
                self.last_items.popitem(last=False)

    def session(self, user: str | None) -> Any:
        from llmrec.agent.session import ChatSession

        return ChatSession(self.chat, self.context(user), self.router)

    def close(self) -> None:
        self.engine.close()
        if self.store is not None:
            self.store.close()


def static_dir() -> Path:
    """The web page's files (served at ``/``)."""
    return Path(__file__).parent / "static"
