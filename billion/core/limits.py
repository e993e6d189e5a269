"""Limits on what a person may ask of billion: the one place they are set and checked.

A new limit is a field of `Limits` (with a comment saying why that size), set once in the app's
settings (billion.core.settings) and read by the UI and the CLI from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

from billion.core.errors import BillionError


@dataclass(frozen=True)
class Limits:
    """Sizes of input the app accepts; the engine checks them, the UI also caps its text boxes."""

    #: characters of one chat prompt
    chat_prompt_chars: int = 8000
    #: characters of one arena prompt: a voter reads two answers to it, so it stays short
    arena_prompt_chars: int = 4000
    #: characters of one race prompt: grounded prompts quote a passage; the model's context, in
    #: tokens, is the real limit and the engine checks it
    race_prompt_chars: int = 32000

    # ---- training runs (billion.train.budget checks them before a run starts) ----
    #: optimizer steps of one run (max_steps, or what epochs come to): 10**9 would never end
    train_max_steps: int = 2000
    #: seconds one run may train; it then stops at the next step and keeps its adapter
    train_max_seconds: float = 3600.0
    #: share of the memory free at the start that a run may take: its estimate is checked against
    #: it before the run starts, and its process is stopped past it, so the app keeps answering
    train_memory_share: float = 0.6
    #: and at most this many GB whatever is free (0: no fixed cap), for a machine shared with others
    train_memory_gb: float = 0.0
    #: runs training at once for one person (browser or Hugging Face login), and in all
    train_runs_per_client: int = 1
    train_runs_total: int = 2

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Limits:
        """The defaults, each overridden by env BILLION_LIMIT_<FIELD> (e.g. BILLION_LIMIT_TRAIN_MAX_STEPS)."""
        environ = os.environ if environ is None else environ
        changes = {}
        for f in fields(cls):
            value = environ.get(f"BILLION_LIMIT_{f.name.upper()}")
            if value:
                kind = type(getattr(DEFAULT_LIMITS, f.name))
                try:
                    changes[f.name] = kind(value)
                except ValueError:
                    raise BillionError(f"BILLION_LIMIT_{f.name.upper()}={value!r} is not a "
                                       f"{kind.__name__}: fix or unset it.") from None
        return replace(DEFAULT_LIMITS, **changes)


DEFAULT_LIMITS = Limits()


def check_prompt(prompt: str | None, max_chars: int, where: str = "a prompt",
                 empty_hint: str = "type a question") -> str:
    """The prompt without surrounding whitespace; a BillionError when it is empty or too long."""
    text = (prompt or "").strip()
    if not text:
        raise BillionError(f"The prompt is empty: {empty_hint}.")
    if len(text) > max_chars:
        raise BillionError(f"The prompt has {len(text)} characters; {where} takes at most "
                           f"{max_chars}: shorten it.")
    return text
