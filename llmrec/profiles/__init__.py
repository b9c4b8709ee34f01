"""Evolving user profiles from reviews (after PURE): a review extractor (:mod:`.extractor`), a profile updater
(:mod:`.updater`), stores in SQLite and PostgreSQL (:mod:`.store`, :mod:`.postgres`), building profiles from a
dataset (:mod:`.build`) and recommending with them (:mod:`.recommend`).

Import submodules directly; this package's root imports nothing heavy.
"""
