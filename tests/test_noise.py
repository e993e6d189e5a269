"""Noise-aware timing notes (issue 14, fix 6)."""

from __future__ import annotations

import os

from billion.bench.rows import speed_rows
from billion.bench.speed import LengthTiming, SpeedResult, Spread
from billion.core import noise


def test_wide_spread_and_busy_machine_get_a_note(monkeypatch):
    assert noise.spread_note([10.0, 10.5, 11.0]) is None
    assert "vary by 100%" in noise.spread_note([5.0, 10.0, 15.0])
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 0, 0))
    assert "machine busy (load average 64.0" in noise.load_note()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0, 0))
    assert noise.load_note() is None


def test_speed_rows_carry_range_and_warning(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0, 0))
    timing = LengthTiming(16, 4, Spread(0.1, 0.09, 0.11, 3), Spread(10.0, 2.0, 30.0, 3))
    result = SpeedResult("m", "cpu", "fp32", "none", 100, 200, "rss_high_water", (timing,), 1, 3, 2, 1.0)
    rows = {r["metric"]: r for r in speed_rows(result, {})}
    assert "range 2 to 30" in rows["decode_tok_s@16"]["extra"]["note"]
    assert "noisy" in rows["decode_tok_s@16"]["extra"]["warning"]
    assert "warning" not in rows["ttft_s@16"]["extra"]
