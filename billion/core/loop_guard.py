"""Stop a degenerate loop: an answer whose tail is one short piece repeated ("Hiiiiii…",
"Boil an egg: Boil an egg: …") says nothing more by running to the token budget.

A lightly tuned small model often falls into such a loop; comparisons (the trainer's before/after
answers) stop it, and say so, instead of showing a wall of repeats.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

from billion.core.generation import GenerationUpdate, Message, stream_chat
from billion.core.loading import LoadedModel
from billion.core.sampling import SamplingSettings

#: a loop is a piece of at most this many characters (a sentence said over and over) ...
MAX_PERIOD = 120
#: ... repeated back to back this many times ...
MIN_REPEATS = 3
#: ... covering at least this many characters (so "!!!" or "..." is no loop)
MIN_SPAN = 24
#: what a stopped answer ends with, so a reader knows the text was cut, not finished
LOOP_NOTE = " [stopped: repeating itself]"


@dataclass(frozen=True)
class GuardedAnswer:
    text: str
    #: True when the guard cut a repeating tail
    looped: bool
    finish_reason: str

    @property
    def shown(self) -> str:
        """The text as a comparison shows it: a cut loop says so."""
        return self.text + LOOP_NOTE if self.looped else self.text


def repeating_period(text: str, max_period: int = MAX_PERIOD, min_repeats: int = MIN_REPEATS,
                     min_span: int = MIN_SPAN) -> int:
    """The length of the piece the text's tail repeats (0 when it does not loop)."""
    for period in range(1, max_period + 1):
        span = max(period * min_repeats, min_span)
        if span > len(text):
            break
        tail = text[-span:]
        if tail == (tail[-period:] * (span // period + 1))[-span:]:
            return period
    return 0


def cut_loop(text: str, period: int) -> str:
    """The text with its repeating tail reduced to one copy of the piece."""
    end = len(text)
    while end - 2 * period >= 0 and text[end - period:end] == text[end - 2 * period:end - period]:
        end -= period
    return text[:end]


def guard(updates: Iterator[GenerationUpdate]) -> GuardedAnswer:
    """Follow a stream; stop reading (which ends the generation) once its tail loops."""
    last = None
    for last in updates:
        period = repeating_period(last.text)
        if period:
            updates.close()  # type: ignore[attr-defined]
            return GuardedAnswer(cut_loop(last.text, period), True, "loop")
    text = last.text if last is not None else ""
    finish = last.result.finish_reason if last is not None and last.result is not None else "length"
    return GuardedAnswer(text, False, finish)


def generate_guarded(loaded: LoadedModel, messages: Sequence[Message], settings: SamplingSettings,
                     cancel: threading.Event | None = None) -> GuardedAnswer:
    """generate_chat that stops a degenerate loop early (and marks the answer looped)."""
    return guard(stream_chat(loaded, messages, settings, cancel))
