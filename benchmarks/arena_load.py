"""Whole-app load: concurrent gradio_client sessions battle and vote against one `python app.py`.

    .venv/bin/python benchmarks/arena_load.py [--clients 8] [--rounds 6] [--tokens 12] [--kill]

The app runs as a real separate process on a loopback port, on a fresh data folder, with the
offline SmolLM2 at two temperatures ("temperature" pool: one model in the cache). Each client is
one session that runs `rounds` times: /arena_battle, then /arena_vote on that battle. The same run
first does the rounds with 1 client (the reference), then with --clients at once; the table shows
latency percentiles per call type and the throughput as a ratio to 1 client. Checks, each a
nonzero exit when it fails: no failed call, every vote answered as recorded is in the store
(SQLite read directly, and the app's own export), and the app's peak RSS above its idle RSS stays
within the model cache budget (BILLION_MODEL_BUDGET_GB).

--endpoints then runs the same load with both contestants behind `transformers serve` (the offline
SmolLM2 on this machine, two endpoint models in the "endpoints" pool) and compares it with the run
above (benchmarks/endpoint_load.py): battles/s, p90, and the app's RSS staying flat.

--kill then starts a vote storm on a second fresh app, SIGKILLs it while votes are in flight,
restarts it on the same data folder and checks that every vote answered as recorded survived.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gradio_client import Client

from billion.core.registry import resolve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from app_process import AppProcess, Memory, start_app  # noqa: E402  (shared with tests/test_load.py)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by path (tests/test_load.py)
from arena_load_checks import (Call, Ledger, exported_ids, load_table, memory_lines,  # noqa: E402,F401
                               missing_votes, stored_votes)

PROMPTS = ("Why is the sky blue?", "Name three fruits.", "Give one tip for sleeping well.",
           "What is rain?", "Say hello in French.", "Name a large ocean.")
CHOICES = ("left", "right", "tie", "bothbad")
CALL_TIMEOUT_S = 300.0


# ---- clients ----------------------------------------------------------------------------------------

def battle_args(prompt: str, tokens: int, seed: int, pool: str = "temperature") -> tuple:
    # prompt, pool, temperature, top_p, max_new_tokens, seed (-1: the Arena refuses known seeds), ...
    return (prompt, pool, 0.7, 0.95, tokens, -1, False, "auto")


def one_round(client: Client, ledger: Ledger, tokens: int, seed: int, pool: str = "temperature") -> bool:
    """Battle then vote in this client's session; True when the app answered the vote as recorded."""
    prompt, choice = PROMPTS[seed % len(PROMPTS)], CHOICES[seed % len(CHOICES)]
    battle = ledger.timed("battle", lambda: client.submit(
        *battle_args(prompt, tokens, seed, pool), api_name="/arena_battle").result(timeout=CALL_TIMEOUT_S))
    if battle is None:
        return False
    token = battle[2]
    reply = ledger.timed("vote", lambda: client.submit(
        choice, token, api_name="/arena_vote").result(timeout=CALL_TIMEOUT_S))
    if reply is None:
        return False
    _, record, status = reply
    if record.get("battle") != token or not status.startswith("Vote recorded"):
        with ledger.changed:
            ledger.calls.append(Call("vote", 0.0, f"vote on {token} not answered as recorded"))
        return False
    ledger.record_answer(token, choice)
    return True


def client_session(url: str, index: int, rounds: int, tokens: int, ledger: Ledger,
                   start: threading.Barrier, stop: threading.Event, pool: str = "temperature") -> None:
    """One gradio_client session: `rounds` battles, each voted on, until done or told to stop."""
    try:
        client = Client(url, verbose=False)
    except Exception as exc:
        with ledger.changed:
            ledger.calls.append(Call("connect", 0.0, f"{type(exc).__name__}: {exc}"))
        start.abort()
        return
    try:
        start.wait()
        for round_ in range(rounds):
            if stop.is_set() or not one_round(client, ledger, tokens, 1000 * index + round_, pool):
                break
    except threading.BrokenBarrierError:
        pass
    finally:
        client.close()


def run_clients(url: str, clients: int, rounds: int, tokens: int, ledger: Ledger,
                stop: threading.Event | None = None, pool: str = "temperature") -> float:
    """All sessions at once (connected first, then released together); returns wall seconds."""
    stop = stop or threading.Event()
    start = threading.Barrier(clients + 1)
    threads = [threading.Thread(target=client_session, daemon=True,
                                args=(url, i, rounds, tokens, ledger, start, stop, pool))
               for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        start.wait(timeout=120)
    except threading.BrokenBarrierError:
        pass  # a session could not connect: it logged a failed call, the others stop
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=CALL_TIMEOUT_S * 2 * rounds)
    return time.perf_counter() - began


# ---- the two scenarios -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    clients: int
    seconds: float
    ledger: Ledger


@dataclass(frozen=True)
class LoadResult:
    phases: tuple[Phase, ...]
    idle: Memory
    peak_bytes: int
    peak_reset: bool
    budget_bytes: int
    weight_bytes: int
    stored: int
    exported: int
    missing: tuple[str, ...]

    @property
    def failures(self) -> list[Call]:
        return [c for p in self.phases for c in p.ledger.failures()]

    @property
    def growth_bytes(self) -> int:
        return self.peak_bytes - self.idle.rss_bytes

    @property
    def ok(self) -> bool:
        answered = sum(len(p.ledger.answered) for p in self.phases)
        return (not self.failures and not self.missing and self.stored == answered
                and self.exported == answered and self.growth_bytes <= self.budget_bytes)


def load_phases(app: AppProcess, clients: int, rounds: int, tokens: int, budget_gb: float,
                baseline: bool = True, pool: str = "temperature") -> LoadResult:
    """On a running app with no model loaded yet: a warm-up round, then `rounds` with 1 client
    (the reference, unless not `baseline`), then with `clients` at once."""
    before = set(stored_votes(app.db))  # a restarted app may hold votes already
    idle = app.memory()
    reset = app.reset_peak()
    warm = Ledger()
    run_clients(app.url, 1, 1, tokens, warm, pool=pool)  # loads the model; not a figure
    phases = []
    for n in (1, clients) if baseline else (clients,):
        ledger = Ledger()
        phases.append(Phase(n, run_clients(app.url, n, rounds, tokens, ledger, pool=pool), ledger))
    peak = app.memory().peak_bytes if reset else max(app.memory().peak_bytes, idle.peak_bytes)
    answered = {**warm.answered, **{t: c for p in phases for t, c in p.ledger.answered.items()}}
    stored = stored_votes(app.db)
    exported = exported_ids(app.url)
    new_stored = len(set(stored) - before) - len(warm.answered)
    new_exported = len(exported - before) - len(warm.answered)
    return LoadResult(tuple(phases), idle, peak, reset, int(budget_gb * 2**30),
                      resolve("smollm2-135m").params_m * 10**6 * 4,  # fp32 weights, one copy
                      new_stored, new_exported,
                      tuple(missing_votes(answered, stored) + sorted(set(answered) - exported)))


def load_run(data: Path, clients: int, rounds: int, tokens: int, budget_gb: float,
             concurrency: int | None = None) -> LoadResult:
    """load_phases on a fresh app process."""
    app = start_app(data, budget_gb, concurrency)
    try:
        return load_phases(app, clients, rounds, tokens, budget_gb)
    finally:
        app.stop()


@dataclass(frozen=True)
class Storm:
    """A vote storm cut by SIGKILL: what the clients saw, and what was in flight at the kill."""

    ledger: Ledger
    answered_at_kill: int
    in_flight: dict[str, int]


def vote_storm(app: AppProcess, clients: int, tokens: int, kill_after: int,
               timeout_s: float = 300.0) -> Storm:
    """Sessions battle and vote until `kill_after` votes were answered and another is in flight;
    then the app gets SIGKILL (no chance to flush or close anything)."""
    ledger, stop = Ledger(), threading.Event()
    storm = threading.Thread(target=run_clients, daemon=True,
                             args=(app.url, clients, 10_000, tokens, ledger, stop))
    storm.start()
    with ledger.changed:
        ledger.changed.wait_for(lambda: len(ledger.answered) >= kill_after
                                and ledger.in_flight["vote"] > 0, timeout=timeout_s)
        # Under the lock no call can start or end between this snapshot and the kill.
        at_kill, in_flight = len(ledger.answered), dict(ledger.in_flight)
        app.process.send_signal(signal.SIGKILL)
    stop.set()
    app.process.wait(timeout=30)
    storm.join(timeout=CALL_TIMEOUT_S)
    return Storm(ledger, at_kill, in_flight)


@dataclass(frozen=True)
class KillResult:
    answered: int  # votes the app answered as recorded before it died
    answered_at_kill: int
    votes_in_flight: int  # submitted, not yet answered, when SIGKILL was sent
    battles_in_flight: int
    votes_cut_off: int  # vote calls that got no answer: each may or may not have been stored
    battles_cut_off: int
    stored: int  # voted battles in the store after the restart
    missing: tuple[str, ...]  # answered votes not in the store (SQLite or the restarted app's export)

    @property
    def ok(self) -> bool:
        # Every answered vote is stored, and every stored vote was answered or cut off (no phantoms).
        return (self.answered > 0 and self.votes_in_flight > 0 and not self.missing
                and self.answered <= self.stored <= self.answered + self.votes_cut_off)


def survivors(restarted: AppProcess, storm: Storm) -> KillResult:
    """Check the storm's answered votes in the restarted app's store: SQLite and its own export."""
    answered = dict(storm.ledger.answered)
    stored = stored_votes(restarted.db)
    exported = exported_ids(restarted.url)
    missing = missing_votes(answered, stored) + sorted(set(answered) - exported)
    cut_off = [c.kind for c in storm.ledger.failures()]
    return KillResult(len(answered), storm.answered_at_kill, storm.in_flight["vote"],
                      storm.in_flight["battle"], cut_off.count("vote"), cut_off.count("battle"),
                      len(stored), tuple(missing))


def kill_run(data: Path, clients: int, tokens: int, budget_gb: float, kill_after: int) -> KillResult:
    """vote_storm on a fresh app, then survivors on the app restarted on the same data folder."""
    app = start_app(data, budget_gb)
    try:
        storm = vote_storm(app, clients, tokens, kill_after)
    finally:
        app.stop()
    restarted = start_app(data, budget_gb)
    try:
        return survivors(restarted, storm)
    finally:
        restarted.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=6, help="battles (each voted on) per client")
    parser.add_argument("--tokens", type=int, default=12, help="max new tokens per answer")
    parser.add_argument("--budget-gb", type=float, default=1.0, help="BILLION_MODEL_BUDGET_GB")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="BILLION_CONCURRENCY (default: the app's own)")
    parser.add_argument("--kill", action="store_true", help="also run the SIGKILL vote storm")
    parser.add_argument("--kill-after", type=int, default=12, help="answered votes before the kill")
    parser.add_argument("--endpoints", action="store_true",
                        help="then the same load against endpoint contestants (transformers serve)")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="billion-load-") as tmp:
        result = load_run(Path(tmp) / "load", args.clients, args.rounds, args.tokens, args.budget_gb,
                          args.concurrency)
        print(f"# arena load · {time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} CPUs · "
              f"load average {os.getloadavg()[0]:.1f} · {args.tokens} tokens per answer · "
              f"concurrency {args.concurrency or 'app default'}")
        print(load_table(result))
        print(*memory_lines(result), sep="\n")
        print(f"store: {result.stored} votes stored, {result.exported} exported by the app, "
              f"{len(result.missing)} answered votes missing")
        for call in result.failures[:5]:
            print(f"failed {call.kind}: {call.error}")
        failed |= not result.ok
        if args.kill:
            kill = kill_run(Path(tmp) / "kill", args.clients, args.tokens, args.budget_gb,
                            args.kill_after)
            print(f"kill: SIGKILL with {kill.votes_in_flight} votes and {kill.battles_in_flight} "
                  f"battles in flight, after {kill.answered_at_kill} answered votes; "
                  f"{kill.answered} votes answered as recorded in all, {kill.votes_cut_off} votes "
                  f"and {kill.battles_cut_off} battles cut off; after restart {kill.stored} votes "
                  f"in the store, {len(kill.missing)} answered votes missing")
            failed |= not kill.ok
        if args.endpoints:
            from endpoint_load import endpoint_load_run, endpoint_report

            served = endpoint_load_run(Path(tmp), args, start_app, load_phases)
            print(load_table(served.result))
            print(*endpoint_report(served, result), sep="\n")
            failed |= not served.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
