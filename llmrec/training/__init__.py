"""Alignment of LLM recommenders on TRL: recipes (:mod:`.recipe`), trainer configs (:mod:`.config`), LoRA SFT
(:mod:`.sft`, with :mod:`.model`, :mod:`.trainer`, :mod:`.curriculum`, :mod:`.callbacks`), RL (:mod:`.rl`, with
:mod:`.rl_recipe`, :mod:`.rewards`, :mod:`.rollouts`).

Nothing heavy is imported here; import the submodule that does the work.
"""

import warnings

# TRL warns at import that the installed vLLM is newer than the range it was tested with; llmrec pins both
# (requirements.lock) and trains on transformers' generation, so the warning would only be noise on every command.
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions", category=UserWarning)
