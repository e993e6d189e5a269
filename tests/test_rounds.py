"""Arena rounds: a BattleRequest becomes a battle between two contestants of the requested pool."""

from __future__ import annotations

import random

import pytest

from billion.arena.contestants import VARIANT_TEMPERATURES, Contestant
from billion.arena.rounds import BattleRequest, start_battle
from billion.core.errors import BillionError
from billion.core.limits import Limits
from billion.core.sampling import SamplingSettings


def test_a_request_picks_two_from_its_pool_with_its_settings():
    settings = SamplingSettings(temperature=0.6, max_new_tokens=9)
    request = BattleRequest("temperature", settings, live_streaming=True)
    battle = start_battle(request, ["smollm2-135m", "gemma3-270m"], (), None, "s", random.Random(0))
    assert {battle.model_a.temperature, battle.model_b.temperature} == set(VARIANT_TEMPERATURES)
    assert battle.live_streaming and battle.session_id == "s" and battle.status == "new"
    assert battle.settings.max_new_tokens == 9 and battle.settings.seed is not None


def test_the_with_base_pool_draws_every_model_and_registered_ones():
    extra = Contestant("smollm2-135m", adapter="/no/such/adapter")  # its files are gone: left out
    seen = set()
    for seed in range(30):
        battle = start_battle(BattleRequest("with-base"), ["smollm2-135m", "gemma3-270m"], (extra,),
                              None, "s", random.Random(seed))
        seen |= {battle.model_a.name, battle.model_b.name}
    assert seen == {"smollm2-135m", "gemma3-270m"}
    assert BattleRequest().settings == SamplingSettings()


def test_nothing_to_battle_is_explained():
    with pytest.raises(BillionError, match="No model can load here"):
        start_battle(BattleRequest(), [], (), None, "s")


# ---- blind by design (issue 13, finding 4): no battle a greedy or seeded Chat call can replay --------

def test_a_battle_never_decodes_greedily_or_with_a_known_seed():
    with pytest.raises(BillionError, match="temperature 0.5 or more"):
        start_battle(BattleRequest(settings=SamplingSettings(temperature=0.0)), ["smollm2-135m"], (), None, "s")
    with pytest.raises(BillionError, match="secret seed"):
        start_battle(BattleRequest(settings=SamplingSettings(seed=11)), ["smollm2-135m"], (), None, "s")
    with pytest.raises(BillionError, match="this app's limit of 64"):
        BattleRequest(settings=SamplingSettings(max_new_tokens=65)).validated(Limits(max_new_tokens=64))
    floor = Limits(arena_min_temperature=0.9)
    with pytest.raises(BillionError, match="0.9 or more"):
        BattleRequest().validated(floor)
    with pytest.raises(BillionError, match="Unknown contestant pool"):
        BattleRequest("everyone").validated()  # type: ignore[arg-type]


def test_each_battle_draws_its_own_secret_seed():
    seeds = {start_battle(BattleRequest(), ["smollm2-135m", "gemma3-270m"], (), None, "s").settings.seed
             for _ in range(20)}
    assert len(seeds) == 20 and None not in seeds
