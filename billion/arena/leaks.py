"""Identity leaks: an arena answer that names its own model or maker ("I am SmolLM", "trained by Meta").

A battle with such an answer keeps its vote but is left out of the ratings: the voter may have
known who wrote what.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from billion.arena.contestants import Contestant

# Model names are flagged anywhere (a version may follow: "SmolLM2", "Llama-3.2").
IDENTITY_NAMES = ("SmolLM", "TinyLlama", "Llama", "Gemma", "Pythia", "StableLM", "GPT-NeoX")
# Makers whose names are distinctive enough to flag anywhere.
MAKERS = ("Hugging Face", "HuggingFace", "HuggingFaceTB", "EleutherAI", "Stability AI", "Meta AI",
          "DeepMind")
# Common words that only reveal a maker after "by / from / at" ("trained by Meta").
MAKERS_IN_CONTEXT = ("Meta", "Google", "Stability")


def identity_terms(contestants: Iterable[Contestant] = ()) -> tuple[str, ...]:
    """Names and distinctive makers to flag: the known families plus these contestants' own names."""
    # Last path part: a hub id's name, a local folder's or an adapter's name.
    own = [p.rstrip("/").rsplit("/", 1)[-1] for c in contestants
           for p in (c.alias, c.adapter or "", c.label,
                     *((c.endpoint.alias, c.endpoint.model) if c.endpoint else ()))]
    return tuple(dict.fromkeys([*IDENTITY_NAMES, *MAKERS, *(t for t in own if len(t) >= 3)]))


def detect_identity_leak(text: str, terms: Iterable[str] | None = None) -> str | None:
    """Why text could reveal who wrote it (it names a model or maker), or None.

    Word-boundary and case-insensitive; a version may follow a name ("SmolLM2", "Llama-3.2").
    Ambiguous maker words (MAKERS_IN_CONTEXT) count only after "by", "from" or "at".
    """
    for term in terms if terms is not None else identity_terms():
        match = re.search(rf"(?<!\w){re.escape(term)}(?:-?\d+(?:\.\d+)*)?(?!\w)", text, re.IGNORECASE)
        if match:
            return leak_reason(match.group(0))
    for maker in MAKERS_IN_CONTEXT:
        match = re.search(rf"\b(?:by|from|at)\s+(?:the\s+)?(?:\w+\s+(?:at|of)\s+)?({maker})\b",
                          text, re.IGNORECASE)
        if match:
            return leak_reason(match.group(1))
    return None


def leak_reason(found: str) -> str:
    return (f"An answer names '{found}', which can give away which model wrote it: the vote is "
            "kept but not counted in the ratings.")
