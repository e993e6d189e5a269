"""Endpoint contestants in the arena engine: pools, records, blind failures, reveal (stdlib server)."""

from __future__ import annotations

import random
import time

import pytest
from endpoint_servers import FaultServer

from billion.arena.battle import answer_pending, ask, contestant_loader, new_battle, reveal
from billion.arena.contestants import Contestant, contestant_pool, endpoint_contestant
from billion.arena.rounds import cast_vote, record_answers, record_ask
from billion.core.loading import ModelCache
from billion.arena.leaks import identity_terms
from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings
from billion.endpoints.config import EndpointModel
from billion.store.store import Store

SERVED = EndpointModel("served", "http://127.0.0.1:9/v1", "org/Some-Model-1B")
#: endpoint contestants never reach the cache: a loader over an empty one
LOAD = contestant_loader(ModelCache(0))


def test_pools_with_endpoints():
    other = EndpointModel("other", "http://127.0.0.1:9/v1", "m")
    mixed = contestant_pool("mixed", ["smollm2-135m"], endpoints=[SERVED])
    assert [c.name for c in mixed] == ["smollm2-135m", "endpoint:served"]
    assert [c.name for c in contestant_pool("endpoints", [], endpoints=[SERVED, other])] == [
        "endpoint:served", "endpoint:other"]
    assert "endpoint:served" in [c.name for c in contestant_pool("all", ["smollm2-135m"],
                                                                 endpoints=[SERVED])]
    with pytest.raises(BillionError, match="needs an endpoint model"):
        contestant_pool("mixed", ["smollm2-135m"])
    with pytest.raises(BillionError, match="needs two endpoint models"):
        contestant_pool("endpoints", ["smollm2-135m"], endpoints=[SERVED])


def test_record_round_trip_and_leak_terms():
    contestant = endpoint_contestant(SERVED)
    record = contestant.to_record()
    assert record["endpoint"]["base_url"] == SERVED.base_url and "api_key" not in record["endpoint"]
    assert Contestant.from_record(record) == contestant
    assert {"served", "Some-Model-1B"} <= set(identity_terms([contestant]))


@pytest.fixture
def faults():
    with FaultServer() as server:
        yield server


def fault_battle(server: FaultServer, mode_a: str, mode_b: str):
    a, b = (endpoint_contestant(EndpointModel(f"fault-{m}", server.base_url, m, max_retries=0))
            for m in (mode_a, mode_b))
    battle = new_battle(a, b, SamplingSettings(max_new_tokens=8), session_id="s",
                        rng=random.Random(3))
    return ask(battle, "Say hello.")


def test_endpoint_battle_votes_and_reveals(faults, tmp_path):
    store = Store(tmp_path / "votes.sqlite3")
    battle = fault_battle(faults, "ok", "ok")
    record_ask(store, battle)
    battle = answer_pending(battle, LOAD)
    record_answers(store, battle)
    assert battle.turns[-1].stats_a.tokens == 5
    voted = cast_vote(store, battle, "left")
    shown = reveal(voted)
    assert f"from 127.0.0.1:{faults.server_address[1]}" in shown.left.display_name


def test_a_cut_answer_fails_blind_and_cannot_be_voted(faults, tmp_path):
    store = Store(tmp_path / "votes.sqlite3")
    battle = fault_battle(faults, "ok", "cut")
    record_ask(store, battle)
    with pytest.raises(BillionError) as failed:
        answer_pending(battle, LOAD)
    message = str(failed.value)
    assert message.startswith("One of the answers failed (its stream was cut off)")
    assert "fault" not in message and "127.0.0.1" not in message
    with pytest.raises(BillionError, match="Both answers must be complete"):
        cast_vote(store, battle, "left")
    with pytest.raises(BillionError, match="Both answers must be complete"):
        store.record_vote(battle.id, "model_a")


def test_two_endpoint_answers_are_fetched_at_the_same_time():
    """The app only waits on sockets: a battle of two slow servers takes one wait, not two."""
    with FaultServer(slow_s=1.5) as server:
        battle = fault_battle(server, "slow", "slow")
        started = time.perf_counter()
        answered = answer_pending(battle, LOAD)
        elapsed = time.perf_counter() - started
    assert answered.turns[-1].answer_a == answered.turns[-1].answer_b == "Hello from the fault server."
    assert 1.5 <= elapsed < 2.7  # one after the other would take at least 3 s
