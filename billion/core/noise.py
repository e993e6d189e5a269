"""Is a timing trustworthy? Repeats give a median and a range; a wide range, or a machine busy with
other work (load average above its cores), gets a note a person can see next to the figure.
"""

from __future__ import annotations

import os
from typing import Sequence

#: (max - min) / median above this: the figure moved too much between repeats to trust one digit
WIDE_SPREAD = 0.25


def load_note() -> str | None:
    """A note when the 1-minute load average is above the number of cores (others compete)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None
    cores = os.cpu_count() or 1
    if load <= cores:
        return None
    return (f"machine busy (load average {load:.1f} on {cores} cores): timings are noisy, rerun "
            "on a quiet machine")


def spread_note(values: Sequence[float], what: str = "the repeats") -> str | None:
    """A note when the range of repeated measurements is wide relative to their median."""
    if len(values) < 2:
        return None
    ordered = sorted(values)
    median = ordered[len(ordered) // 2] if len(ordered) % 2 else sum(ordered[len(ordered) // 2 - 1:
                                                                              len(ordered) // 2 + 1]) / 2
    if median <= 0:
        return None
    width = (ordered[-1] - ordered[0]) / median
    if width <= WIDE_SPREAD:
        return None
    return f"{what} vary by {100 * width:.0f}% of the median ({ordered[0]:.3g} to {ordered[-1]:.3g}): noisy"


def timing_notes(values: Sequence[float], what: str = "the repeats") -> tuple[str, ...]:
    return tuple(n for n in (spread_note(values, what), load_note()) if n)
