"""The profile updater: new facts merged into a user's profile, deduplicated, conflicts resolved, recency-weighted
and kept within a token budget. The same profile and facts always give the same new profile.

- **Deduplicated**: a new fact of the same kind as an existing one whose aspect is similar (MiniLM cosine at least
  ``similarity``; identical text without an embedder) reinforces it: its strength grows by one, it is seen again
  now, its evidence is the newest, its aspect stays.
- **Conflicts**: a new dislike of an aspect replaces the similar likes, and a new like the similar dislikes: the
  newer opinion wins, unless the older one was said more than once (its strength is above 1), which the new
  opinion then weakens by one instead (twenty liked comedies and one disliked one still like comedy).
- **Recency**: a fact's weight is its strength halved every ``half_life`` reviews since it was last seen.
- **Budget**: while the rendered profile has more than ``budget`` tokens (counted with the model's tokenizer), the
  lightest fact goes. Facts are kept strongest first (kind, then weight), which is the order they render in.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from llmrec.profiles.schema import KINDS, Fact, Profile, render_profile

OPPOSITE = {"like": "dislike", "dislike": "like"}


class ProfileUpdater:
    """Merges facts into profiles (see the module docstring).

    ``tokenizer``: counts the budget (a transformers tokenizer; ``None``: words). ``embedder``: a
    sentence-transformers model for aspect similarity (``None``: only identical aspects match). ``budget``: tokens
    of the rendered profile. ``half_life``: reviews over which a fact's weight halves. ``similarity``: the cosine
    at which two aspects are the same.
    """

    def __init__(
        self,
        tokenizer: Any = None,
        embedder: Any = None,
        budget: int = 200,
        half_life: float = 8.0,
        similarity: float = 0.8,
    ) -> None:
        if budget < 8 or half_life <= 0 or not 0 < similarity <= 1:
            raise ValueError("budget must be at least 8 tokens, half_life positive and similarity in (0, 1]")
        self.tokenizer = tokenizer
        self.embedder = embedder
        self.budget = budget
        self.half_life = half_life
        self.similarity = similarity
        self._vectors: dict[str, np.ndarray] = {}

    def tokens(self, text: str) -> int:
        """Tokens of ``text`` under the budget's tokenizer."""
        if self.tokenizer is None:
            return len(text.split())
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _vector(self, aspects: list[str]) -> None:
        missing = sorted({a for a in aspects if a not in self._vectors})
        if missing and self.embedder is not None:
            encoded = self.embedder.encode(missing, normalize_embeddings=True, convert_to_numpy=True)
            self._vectors.update(zip(missing, np.asarray(encoded, dtype=np.float32), strict=True))

    def same(self, a: str, b: str) -> bool:
        """Whether two aspects say the same thing."""
        if a == b:
            return True
        if self.embedder is None:
            return False
        self._vector([a, b])
        return float(self._vectors[a] @ self._vectors[b]) >= self.similarity

    def weight(self, fact: Fact, now: int) -> float:
        """A fact's strength, halved every ``half_life`` reviews since it was last seen (``now``: reviews so far)."""
        return fact.strength * math.pow(0.5, max(0, now - fact.seen) / self.half_life)

    def merge(self, profile: Profile | None, facts: list[Fact], user: str, reviews: int = 1) -> Profile:
        """The next version of ``user``'s profile: ``profile`` (``None``: none yet) with ``facts`` merged, after
        ``reviews`` more reviews (0 for a fact stated outside a review, such as in a chat)."""
        current = list(profile.facts) if profile is not None else []
        seen = (profile.reviews if profile is not None else 0) + reviews
        self._vector([f.aspect for f in [*current, *facts]])
        for fact in sorted(facts, key=lambda f: (KINDS.index(f.kind), f.aspect)):
            fact = replace(fact, seen=seen)
            if fact.kind in OPPOSITE:
                contrary = [i for i, f in enumerate(current) if f.kind == OPPOSITE[fact.kind]
                            and self.same(f.aspect, fact.aspect)]  # fmt: skip
                if any(current[i].strength > 1 for i in contrary):  # outweighed: the older opinion only weakens
                    for i in contrary:
                        current[i] = replace(current[i], strength=current[i].strength - 1)
                    continue
                current = [f for i, f in enumerate(current) if i not in contrary]
            similar = (i for i, f in enumerate(current) if f.kind == fact.kind and self.same(f.aspect, fact.aspect))
            match = next(similar, None)
            if match is None:
                current.append(fact)
            else:
                old = current[match]
                current[match] = replace(old, evidence=fact.evidence, review=fact.review, seen=seen,
                                         strength=old.strength + 1)  # fmt: skip
        current.sort(key=lambda f: (KINDS.index(f.kind), -self.weight(f, seen), -f.seen, f.aspect))
        user_profile = Profile(user, (profile.version if profile is not None else 0) + 1, seen, tuple(current))
        return self.fit(user_profile)

    def fit(self, profile: Profile) -> Profile:
        """``profile`` with its lightest facts dropped until its rendering is within the budget."""
        facts = list(profile.facts)
        while facts and self.tokens(render_profile(replace(profile, facts=tuple(facts)))) > self.budget:
            lightest = min(facts, key=lambda f: (self.weight(f, profile.reviews), f.seen, f.aspect))
            facts.remove(lightest)
        return replace(profile, facts=tuple(facts))
