"""Datasets: the dataset directory, importers, builtin datasets, preprocessing, statistics and splits.

Import submodules directly (``from llmrec.data.splits import leave_one_out_split``); this package's root
imports nothing heavy.
"""
