"""The catalog: items and titles, title normalisation, token tries, and grounding constraints.

Import submodules directly (``from llmrec.catalog.grounding import Grounding``); this package's root imports
nothing heavy.
"""
