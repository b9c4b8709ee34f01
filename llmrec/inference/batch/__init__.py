"""Resumable batch inference over JSONL or Parquet rows: ``llmrec batch``.

Rows stream in chunks. Each row needs a unique ``id``; by task it also needs:

- ``generate``: ``prompt`` (text, no chat template) or ``messages`` (chat); with ``--dataset`` and
  ``--ground catalog`` the answer is decoded through the whole-catalog title trie and resolved to an item.
- ``rank``: ``history`` and ``candidates``, item ids of ``--dataset`` or titles (titles alone work without a
  dataset: the row's titles are then its catalog, and its answers carry no item ids). The answer is one candidate,
  generated under the candidate constraint, plus the ``ranking`` of all candidates by the model's log-probability
  of each as the answer.
- ``reason``: as ``rank``, plus optional ``paths`` (reasoning paths; default ``--paths``).

Output rows (JSONL) keep the ``id`` and hold the texts, the resolved ``item_id``/``title`` (and ``ranking``;
``in_history`` when the answer repeats a history item), and ``usage``. The run's summary adds ``valid_ratio``,
``duplicate_ratio`` and ``in_history_ratio`` over the grounded answers.

Every chunk's rows are appended with one write and flushed, so a crash loses at most the chunk in flight;
``--resume`` drops a torn last line, skips finished ids and never writes an id twice. A bad row (missing field,
unknown item, prompt over the context with ``--overflow reject``, a request the server rejects) goes to
``OUT.errors.jsonl`` with its row number and the batch goes on; rows that failed are retried by ``--resume``.

The modules: :mod:`.config` (what a job runs), :mod:`.rows` (reading input, resuming, writing output),
:mod:`.items` (a row's item references), :mod:`.tasks` (answering a chunk), :mod:`.summary` (the figures),
:mod:`.drivers` (the local and the Ray Data loop).
"""

from llmrec.inference.batch.config import BatchConfig, default_sampling
from llmrec.inference.batch.drivers import run_batch, run_batch_ray
from llmrec.inference.batch.rows import finished_ids
from llmrec.inference.batch.summary import BatchSummary

__all__ = ["BatchConfig", "BatchSummary", "default_sampling", "finished_ids", "run_batch", "run_batch_ray"]
