"""Alignment of LLM recommenders on TRL: recipes (:mod:`.recipe`), trainer configs (:mod:`.config`), LoRA SFT
(:mod:`.sft`, with :mod:`.model`, :mod:`.trainer`, :mod:`.curriculum`, :mod:`.callbacks`).

Nothing heavy is imported here; import the submodule that does the work.
"""
