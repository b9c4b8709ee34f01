"""LLM inference: one Engine protocol over vLLM, transformers and OpenAI-compatible servers, with grounding."""
