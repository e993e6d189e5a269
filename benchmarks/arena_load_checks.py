"""What a run of benchmarks/arena_load.py records, checks and prints: the ledger of the clients'
calls, the votes in the store against those answered as recorded, and the table of latencies,
throughput and memory."""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from gradio_client import Client

from billion.core.table import format_table

if TYPE_CHECKING:
    from arena_load import LoadResult

# What each button press is stored as when the left side sits in seat a (billion.arena.battle.winner_for).
STORED = {"tie": "tie", "bothbad": "tie (bothbad)"}


# ---- the clients' ledger ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    kind: str  # "battle" or "vote"
    seconds: float
    error: str = ""


@dataclass
class Ledger:
    """Every call the clients made, and every vote the app answered as recorded (token -> choice)."""

    calls: list[Call] = field(default_factory=list)
    answered: dict[str, str] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=lambda: {"battle": 0, "vote": 0})
    changed: threading.Condition = field(default_factory=threading.Condition)

    def timed(self, kind: str, call: Callable[[], Any]) -> Any:
        """Run one call, log its latency or error; returns its result, or None when it failed."""
        with self.changed:
            self.in_flight[kind] += 1
            self.changed.notify_all()
        started = time.perf_counter()
        try:
            result, error = call(), ""
        except Exception as exc:  # a failed call is a finding to count, not a crash
            result, error = None, f"{type(exc).__name__}: {exc}"[:300] or "error"
        with self.changed:
            self.in_flight[kind] -= 1
            self.calls.append(Call(kind, time.perf_counter() - started, error))
            self.changed.notify_all()
        return result

    def record_answer(self, token: str, choice: str) -> None:
        with self.changed:
            self.answered[token] = choice
            self.changed.notify_all()

    def failures(self) -> list[Call]:
        return [c for c in self.calls if c.error]




# ---- checks on the store ----------------------------------------------------------------------------

def stored_votes(db: Path) -> dict[str, tuple[str, str]]:
    """battle id -> (position of seat a, stored vote) for every voted battle, read with plain sqlite3."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT id, position, vote FROM battles WHERE vote IS NOT NULL").fetchall()
    finally:
        con.close()
    return {battle: (position, vote) for battle, position, vote in rows}


def expected_vote(choice: str, position: str) -> str:
    """What a press of `choice` is stored as, given which side seat a was shown on."""
    if choice in STORED:
        return STORED[choice]
    return "model_a" if choice == position else "model_b"


def missing_votes(answered: dict[str, str], stored: dict[str, tuple[str, str]]) -> list[str]:
    """Answered-as-recorded votes that the store lacks or holds with another outcome."""
    return [token for token, choice in answered.items()
            if token not in stored or stored[token][1] != expected_vote(choice, stored[token][0])]


def exported_ids(url: str) -> set[str]:
    """Battle ids in the app's own export of voted battles (JSONL), through gradio_client."""
    client = Client(url, verbose=False)
    try:
        files = client.predict(api_name="/arena_export")
    finally:
        client.close()
    [jsonl] = [f for f in files if f.endswith(".jsonl")]
    with open(jsonl, encoding="utf-8") as fh:
        return {json.loads(line)["id"] for line in fh if line.strip()}


# ---- report ------------------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (no interpolation: with 48 samples, p99 is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


def latency_cells(ledger: Ledger, kind: str) -> list[str]:
    seconds = [c.seconds for c in ledger.calls if c.kind == kind and not c.error]
    return [f"{percentile(seconds, p):.2f}" for p in (50, 90, 99, 100)]


def load_table(result: LoadResult) -> str:
    rows = []
    reference = None
    for phase in result.phases:
        battles = sum(1 for c in phase.ledger.calls if c.kind == "battle" and not c.error)
        requests = sum(1 for c in phase.ledger.calls if not c.error)
        per_s = battles / phase.seconds
        reference = reference or per_s
        rows.append([phase.clients, battles, len(phase.ledger.answered), len(phase.ledger.failures()),
                     f"{phase.seconds:.1f}", f"{requests / phase.seconds:.2f}", f"{per_s:.2f}",
                     f"{per_s / reference:.2f}x", *latency_cells(phase.ledger, "battle"),
                     *latency_cells(phase.ledger, "vote")])
    return format_table(["clients", "battles", "votes", "failed", "wall s", "req/s", "battles/s",
                         "vs 1 client", "battle p50 s", "p90", "p99", "max", "vote p50 s", "p90",
                         "p99", "max"], rows)


def memory_lines(result: LoadResult) -> list[str]:
    gib = 2**30
    verdict = "within" if result.growth_bytes <= result.budget_bytes else "OVER"
    return [f"memory: idle RSS {result.idle.rss_bytes / gib:.2f} GiB, peak RSS "
            f"{result.peak_bytes / gib:.2f} GiB (VmHWM{'' if result.peak_reset else ', not reset'}), "
            f"growth {result.growth_bytes / gib:.2f} GiB {verdict} the model budget "
            f"{result.budget_bytes / gib:.2f} GiB (one fp32 copy of the weights: "
            f"{result.weight_bytes / gib:.2f} GiB)"]
