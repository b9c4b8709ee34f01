"""llmrec: LLM-augmented sequential recommendation.

The package root stays import-light (no torch) so that ``llmrec --help`` is fast; heavy libraries are
imported inside the modules that need them.
"""

__version__ = "0.1.0"
