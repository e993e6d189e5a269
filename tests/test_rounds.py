"""Arena rounds: a BattleRequest becomes a battle between two contestants of the requested pool."""

from __future__ import annotations

import random

import pytest

from billion.arena.contestants import VARIANT_TEMPERATURES, Contestant
from billion.arena.rounds import BattleRequest, start_battle
from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings


def test_a_request_picks_two_from_its_pool_with_its_settings():
    settings = SamplingSettings(temperature=0.3, max_new_tokens=9)
    request = BattleRequest("temperature", settings, live_streaming=True)
    battle = start_battle(request, ["smollm2-135m", "gemma3-270m"], (), None, "s", random.Random(0))
    assert {battle.model_a.temperature, battle.model_b.temperature} == set(VARIANT_TEMPERATURES)
    assert battle.live_streaming and battle.session_id == "s" and battle.status == "new"
    assert battle.settings.max_new_tokens == 9 and battle.settings.seed is not None


def test_the_default_pool_draws_every_model_and_registered_ones():
    extra = Contestant("smollm2-135m", adapter="/no/such/adapter")  # its files are gone: left out
    seen = set()
    for seed in range(30):
        battle = start_battle(BattleRequest(), ["smollm2-135m", "gemma3-270m"], (extra,), None, "s",
                              random.Random(seed))
        seen |= {battle.model_a.name, battle.model_b.name}
    assert seen == {"smollm2-135m", "gemma3-270m"}
    assert BattleRequest().settings == SamplingSettings()


def test_nothing_to_battle_is_explained():
    with pytest.raises(BillionError, match="No model can load here"):
        start_battle(BattleRequest(), [], (), None, "s")
