"""The whole app under load, as a separate `python app.py` process driven by gradio_client sessions.

A bounded run of benchmarks/arena_load.py (the code lives there, once): 8 concurrent sessions battle
and vote; then a vote storm is cut by SIGKILL and the app restarted on the same store.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from app_process import start_app

from billion.core.registry import MODELS

# ~50 s of concurrent battles: slow (`pytest -m slow`); docs/load.md holds its measured run, and the
# Arena's store and blindness are covered by test_app_arena.py and test_battle.py in the default run.
pytestmark = [pytest.mark.skipif(
    not any(m.alias == "smollm2-135m" for m in MODELS), reason="needs the offline SmolLM2 entry"),
    pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "arena_load.py"
_spec = importlib.util.spec_from_file_location("arena_load", SCRIPT)
arena_load = importlib.util.module_from_spec(_spec)
sys.modules["arena_load"] = arena_load  # dataclasses look their module up there
_spec.loader.exec_module(arena_load)

CLIENTS, ROUNDS, TOKENS = 8, 2, 4  # 4 tokens: CPU time goes to concurrency, not to long answers
BUDGET_GB = 1.0  # one fp32 SmolLM2-135M is 0.50 GiB: a second copy would not fit
KILL_AFTER = 4


@pytest.fixture(scope="module")
def after_kill(tmp_path_factory):
    """(app restarted after a SIGKILL mid vote storm, the storm): two app starts serve both tests."""
    data = tmp_path_factory.mktemp("load-app")
    app = start_app(data, BUDGET_GB)
    try:
        storm = arena_load.vote_storm(app, CLIENTS, TOKENS, KILL_AFTER)
    finally:
        app.stop()
    restarted = start_app(data, BUDGET_GB)
    try:
        yield restarted, storm
    finally:
        restarted.stop()


def test_votes_answered_before_a_sigkill_survive_the_restart(after_kill):
    kill = arena_load.survivors(*after_kill)
    assert kill.votes_in_flight >= 1, "the kill came with no vote in flight: it proved little"
    assert kill.answered >= KILL_AFTER
    assert kill.missing == ()
    # Stored votes are the answered ones plus, at most, the ones cut off: no phantom votes.
    assert kill.answered <= kill.stored <= kill.answered + kill.votes_cut_off


def test_eight_sessions_battle_and_vote_without_a_failure(after_kill):
    """On the restarted app (no model loaded yet): 8 sessions at once, each battle voted on."""
    app, _ = after_kill
    result = arena_load.load_phases(app, CLIENTS, ROUNDS, TOKENS, BUDGET_GB, baseline=False)
    [phase] = result.phases
    assert result.failures == []
    assert len(phase.ledger.answered) == CLIENTS * ROUNDS
    # Every answered vote is stored with the side clicked, and nothing else is (counted exactly).
    assert result.missing == ()
    assert result.stored == result.exported == CLIENTS * ROUNDS
    # The app grew by at most the model cache budget over its idle size, peak included.
    assert result.peak_reset, "VmHWM could not be reset: the peak would include start-up"
    assert 0 < result.growth_bytes <= result.budget_bytes, arena_load.memory_lines(result)
