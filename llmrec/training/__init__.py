"""Alignment of LLM recommenders: task datasets from a leave-one-out split (:mod:`llmrec.training.tasks`).

Nothing heavy is imported here; import the submodule that does the work.
"""
