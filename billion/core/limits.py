"""Limits on what a person may ask of billion: the one place they are set and checked.

A new limit is a field of `Limits` (with a comment saying why that size), set once in the app's
settings (billion.core.settings) and read by the UI and the CLI from there.
"""

from __future__ import annotations

from dataclasses import dataclass

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
