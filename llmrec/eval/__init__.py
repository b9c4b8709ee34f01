"""Evaluation: metric functions, protocols (full ranking, sampled negatives, 20 candidates), runner."""
