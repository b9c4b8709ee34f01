"""Item representations: one vector per catalog item, the input of a projector.

- ``id``: the item embeddings of a trained encoder run (its best checkpoint), frozen;
- ``text``: sentence-transformers embeddings of each item's title and text attributes (default all-MiniLM-L6-v2,
  bundled), cached per dataset and embedder under ``$LLMREC_HOME/embeddings/``;
- ``hybrid``: both, concatenated (``id`` columns first).

Every table is ``[N+1, D]`` float32 indexed by item id; row 0, the padding item, is zeros. Its ``fingerprint``
identifies the catalog (item ids and titles) it was built for, so a run directory that records it can refuse a
dataset whose items are not the ones it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmrec.data.dataset import Dataset
from llmrec.devices import resolve_device
from llmrec.encoders.run import check_encoder_run, load_best
from llmrec.errors import LlmrecError
from llmrec.models.defaults import resolve_model
from llmrec.paths import llmrec_home
from llmrec.progress import progress_bar
from llmrec.runs import atomic_write

KINDS = ("id", "text", "hybrid")
ENCODE_BATCH = 256


@dataclass(frozen=True)
class ItemTable:
    """Item vectors ``[N+1, D]`` (row 0 zeros) and where they come from.

    ``dims`` gives the width of each part in column order (``{"id": 64, "text": 384}`` for hybrid);
    ``fingerprint`` is :func:`catalog_fingerprint` of the dataset; ``encoder_run`` and ``embedder`` name the
    sources that were used (``None`` when the kind needs none).
    """

    kind: str
    vectors: torch.Tensor
    dims: dict[str, int]
    fingerprint: str
    encoder_run: str | None = None
    embedder: str | None = None

    @property
    def dim(self) -> int:
        """Width of a vector (the projector's ``in_dim``)."""
        return int(self.vectors.shape[1])

    @property
    def num_items(self) -> int:
        """Number of items; ids run from 1 to this."""
        return int(self.vectors.shape[0]) - 1

    def describe(self) -> dict[str, Any]:
        """JSON-ready provenance (everything but the vectors), to record in a run directory."""
        return {
            "kind": self.kind,
            "dims": dict(self.dims),
            "num_items": self.num_items,
            "fingerprint": self.fingerprint,
            "encoder_run": self.encoder_run,
            "embedder": self.embedder,
        }


def catalog_fingerprint(dataset: Dataset) -> str:
    """A short hash of the item table (ids and titles): equal fingerprints, same items under the same ids."""
    items = dataset.items.sort_values("item_id")
    blob = json.dumps({"ids": items["item_id"].astype(int).tolist(), "titles": items["title"].astype(str).tolist()})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def item_texts(dataset: Dataset) -> list[str]:
    """The text embedded for each item, in id order (item 1 first): its title, then each non-empty text
    attribute as ``name: value``, joined by ``"; "``.

    Text attributes are the item table's string columns other than ``raw_id`` and ``title``; underscores in
    column names become spaces (``release_year: 1995``).
    """
    attributes = dataset.attribute_texts
    return [
        "; ".join(text for text in (str(title), attributes[int(item)]) if text)
        for item, title in dataset.items.sort_values("item_id")[["item_id", "title"]].itertuples(index=False)
    ]


def encoder_item_vectors(run: Path, dataset: Dataset) -> torch.Tensor:
    """The ``id`` representation: the best checkpoint's item embeddings, ``[N+1, H]`` float32, row 0 zeros."""
    config = check_encoder_run(run, dataset)
    encoder = load_best(run)
    if not encoder.trainable:
        raise LlmrecError(
            f"{run}: {config.model} learns no item embeddings; use a run of a trained encoder (e.g. sasrec)"
        )
    with torch.no_grad():
        vectors = encoder.item_embeddings().detach().to(torch.float32).clone()  # (N+1, H)
    if vectors.shape[0] != dataset.num_items + 1:
        raise LlmrecError(
            f"{run}: the encoder has {vectors.shape[0] - 1:,} item embeddings for {dataset.num_items:,} items; "
            "retrain it"
        )
    vectors[0] = 0
    return vectors


class UserStates:
    """An encoder run's user state after a history (``Encoder.encode``: the vector its scores dot with the item
    embeddings, before the per-item bias of an encoder that has one), for the ``<user-emb>`` placeholder of
    prompts whose items are that run's ``id`` vectors: ``UserStates("runs/sasrec", dataset)([[5, 9, 2], [7]])``
    is ``[2, 64]`` for a 64-wide SASRec.
    """

    def __init__(self, run: Path | str, dataset: Dataset, batch_size: int = 256) -> None:
        config = check_encoder_run(Path(run), dataset)
        self.encoder = load_best(run).eval()
        if not self.encoder.trainable:
            raise LlmrecError(f"{run}: {config.model} has no user state; use a run of a trained encoder")
        self.run = str(run)
        self.max_len = int(self.encoder.config.max_len)
        self.batch_size = batch_size

    def check_items(self, table: ItemTable, where: str) -> None:
        """Refuse an item table (``where``: the LLM run it was saved in) whose ``id`` vectors are not this
        encoder's item embeddings: an encoder retrained at the same path since the LLM was trained gives user
        states that do not belong with the items (and scores) the LLM learned."""
        if "id" not in table.dims:
            return
        with torch.no_grad():
            live = self.encoder.item_embeddings().detach().to(torch.float32)[1:]
        saved = table.vectors[1:, : table.dims["id"]].to(torch.float32)
        if live.shape != saved.shape or not torch.allclose(live, saved, rtol=1e-4, atol=1e-6):
            raise LlmrecError(
                f"{self.run}: its item embeddings are not those {where} was trained with (the encoder was trained "
                "again since?); serve the run with the encoder run it was trained on, or train it again"
            )

    def __call__(self, histories: list[list[int]] | list[Any]) -> torch.Tensor:
        """``[E, H]`` float32: the state after each history (item ids, oldest first; the last ``max_len`` count)."""
        if any(len(history) == 0 for history in histories):
            raise LlmrecError("a user state needs at least one history item")
        from llmrec.encoders.base import left_padded

        out = []
        for start in range(0, len(histories), self.batch_size):
            seqs = left_padded(histories[start : start + self.batch_size], self.max_len)  # (B, L)
            with torch.inference_mode():
                out.append(self.encoder.encode(seqs).float())  # (B, H)
        if not out:
            return torch.zeros((0, int(self.encoder.item_embeddings().shape[1])))
        return torch.cat(out).clone()


def _embedder_identity(embedder: str) -> dict[str, Any]:
    """What names an embedder in a cache key: its path or hub id, and for a local directory its files' sizes and
    modification times (a model saved again in place gets a new key)."""
    path = Path(embedder)
    if not path.is_dir():
        return {"embedder": embedder}
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {
        "embedder": str(path.resolve()),
        "files": [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns] for p in files],
    }


def text_cache_file(dataset: Dataset, embedder: str, texts: list[str]) -> Path:
    """Where the text vectors of ``dataset`` under ``embedder`` are cached (keyed by catalog, texts and model)."""
    blob = json.dumps(
        {
            "catalog": catalog_fingerprint(dataset),
            "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            **_embedder_identity(embedder),
        },
        sort_keys=True,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset.name) or "dataset"
    return llmrec_home() / "embeddings" / f"{name}-{key}.safetensors"


def _read_cache(file: Path, rows: int) -> torch.Tensor | None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        vectors = load_file(str(file))["vectors"]
    except (SafetensorError, KeyError, OSError):
        return None
    return vectors if vectors.ndim == 2 and vectors.shape[0] == rows else None


def text_item_vectors(dataset: Dataset, embedder: str | None = None, device: str = "auto") -> tuple[torch.Tensor, str]:
    """The ``text`` representation ``[N+1, D]`` float32 (row 0 zeros) and the resolved embedder.

    ``embedder``: a sentence-transformers path or hub id; ``None`` for the bundled all-MiniLM-L6-v2. The vectors
    are computed once (on ``device``) and then read from the cache; an unreadable cache file is recomputed.
    """
    resolved = resolve_model(embedder, role="embedder")
    texts = item_texts(dataset)
    file = text_cache_file(dataset, resolved, texts)
    if file.exists():
        cached = _read_cache(file, len(texts) + 1)
        if cached is not None:
            return cached, resolved
    body = encode_texts(load_embedder(resolved, device), texts, "embedding item texts")  # (N, D)
    vectors = torch.cat([torch.zeros(1, body.shape[1]), body])  # (N+1, D)
    file.parent.mkdir(parents=True, exist_ok=True)
    _write_cache(file, vectors, {"dataset": dataset.name, "embedder": resolved})
    return vectors, resolved


def load_embedder(embedder: str | None = None, device: str = "auto") -> Any:
    """A sentence-transformers model on ``device``: ``embedder`` (a path or hub id) or the bundled MiniLM."""
    from sentence_transformers import SentenceTransformer

    embedder = resolve_model(embedder, role="embedder")
    try:
        return SentenceTransformer(embedder, device=resolve_device(device))
    except (OSError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise LlmrecError(
            f"cannot load the text embedder {embedder!r} ({first}); pass a sentence-transformers directory or hub "
            "id, or leave it unset for the bundled all-MiniLM-L6-v2"
        ) from None


def encode_texts(model: Any, texts: list[str], what: str = "embedding texts") -> torch.Tensor:
    """``[N, D]`` float32 on the CPU: one embedding per text, in order (a progress bar named ``what`` for many)."""
    chunks = []
    bar = progress_bar(len(texts), what, unit="text", min_total=ENCODE_BATCH)
    for start in range(0, len(texts), ENCODE_BATCH):
        chunk = texts[start : start + ENCODE_BATCH]
        chunks.append(
            model.encode(chunk, batch_size=64, convert_to_tensor=True, show_progress_bar=False).float().cpu()
        )
        bar.update(len(chunk))
    bar.close()
    return torch.cat(chunks) if chunks else torch.zeros(0, model.get_sentence_embedding_dimension())


def _write_cache(file: Path, vectors: torch.Tensor, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    atomic_write(file, lambda tmp: save_file({"vectors": vectors.contiguous()}, str(tmp), metadata=metadata))


def item_representation(
    kind: str,
    dataset: Dataset,
    encoder_run: Path | str | None = None,
    embedder: str | None = None,
    device: str = "auto",
) -> ItemTable:
    """Build the ``kind`` (``id``, ``text`` or ``hybrid``) representation of ``dataset``'s items.

    ``encoder_run`` (a run directory of ``llmrec encoder train``) is needed for ``id`` and ``hybrid``;
    ``embedder`` picks the text model for ``text`` and ``hybrid`` (``None``: the bundled default), run on
    ``device`` when the vectors are not cached yet.
    """
    if kind not in KINDS:
        raise LlmrecError(f"unknown item representation {kind!r}; choose one of {', '.join(KINDS)}")
    parts: dict[str, torch.Tensor] = {}
    run_name = resolved = None
    if kind in ("id", "hybrid"):
        if encoder_run is None:
            raise LlmrecError(f"item representation {kind!r} needs an encoder run (a directory of a trained encoder)")
        parts["id"] = encoder_item_vectors(Path(encoder_run), dataset)
        run_name = str(encoder_run)
    if kind in ("text", "hybrid"):
        parts["text"], resolved = text_item_vectors(dataset, embedder, device)
    vectors = torch.cat(list(parts.values()), dim=1)  # (N+1, D)
    return ItemTable(
        kind=kind,
        vectors=vectors,
        dims={name: int(part.shape[1]) for name, part in parts.items()},
        fingerprint=catalog_fingerprint(dataset),
        encoder_run=run_name,
        embedder=resolved,
    )
