"""LLM inference: one Engine protocol over vLLM, transformers and OpenAI-compatible servers (built by name in
:mod:`llmrec.inference.registry`), grounded recommenders, reasoning generation and batch jobs."""
