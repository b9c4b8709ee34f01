"""Ranking: metrics as pure functions of the target's rank, and the protocols that pick the candidates a target is
ranked against (full catalog, sampled negatives, LLaRA's 20 candidates). Every trainer and evaluator stands on it.
"""
