"""An arena round as the Arena tab runs it: a BattleRequest becomes a battle between a pair picked
from the pool, and each of its steps is stored (billion.arena.battle holds the steps themselves).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from billion.arena.battle import Battle, Choice, new_battle, vote
from billion.arena.contestants import (POOL_KINDS, Contestant, PoolKind, contestant_pool, pick_pair,
                                       with_precision)
from billion.arena.ratings import RatingTable
from billion.core.errors import BillionError
from billion.core.limits import DEFAULT_LIMITS, Limits, check_max_new_tokens
from billion.core.sampling import SamplingSettings
from billion.endpoints.config import EndpointModel
from billion.store.store import Store


@dataclass(frozen=True)
class BattleRequest:
    """A new battle as a person asks for it; the Arena tab and its API fill this."""

    #: who may battle (billion.arena.contestants.POOL_KINDS)
    pool: PoolKind = "all"
    #: sampling both sides share; the seed is fixed when the battle starts
    settings: SamplingSettings = SamplingSettings()
    #: stream both answers as they grow (off: both appear together, since pace gives a model away)
    live_streaming: bool = False
    #: both sides' precision; "auto" = this machine's fast one (billion.core.precision)
    precision: str = "auto"

    def validated(self, limits: Limits = DEFAULT_LIMITS) -> BattleRequest:
        """The request when it keeps the battle blind and within limits; a BillionError otherwise.

        No seed may be given and the temperature has a floor: with a known seed, or greedy
        decoding, a Chat call with each model would reproduce the anonymous answers.
        """
        if self.pool not in POOL_KINDS:
            raise BillionError(f"Unknown contestant pool {self.pool!r}: use one of {', '.join(POOL_KINDS)}.")
        settings = self.settings.validate()
        if settings.seed is not None:
            raise BillionError("The Arena draws a secret seed for every battle (a known seed would let "
                               "anyone reproduce its answers in Chat): leave the seed at -1.")
        if settings.temperature < limits.arena_min_temperature:
            raise BillionError(f"The Arena samples at temperature {limits.arena_min_temperature:g} or "
                               f"more (got {settings.temperature:g}), so that a greedy Chat call cannot "
                               "reproduce an anonymous answer: raise it.")
        check_max_new_tokens(settings.max_new_tokens, limits)
        return replace(self, settings=settings)


def start_battle(request: BattleRequest, available: Sequence[str], extra: Sequence[Contestant],
                 ratings: RatingTable | None, session_id: str,
                 rng: random.Random | None = None, limits: Limits = DEFAULT_LIMITS,
                 endpoints: Sequence[EndpointModel] = ()) -> Battle:
    """A battle between a pair from the pool (few battles and overlapping intervals first), sides at
    random. available: aliases that can load here; extra: registered contestants (adapters);
    endpoints: models behind OpenAI-compatible servers."""
    request = request.validated(limits)
    contestants = with_precision(contestant_pool(request.pool, available, extra, endpoints),
                                 request.precision)
    first, second = pick_pair(contestants, ratings, rng=rng)
    return new_battle(first, second, request.settings, session_id=session_id, rng=rng,
                      live_streaming=request.live_streaming)


def record_ask(store: Store, battle: Battle) -> None:
    """Store the pending prompt (and the battle itself on its first ask)."""
    if not battle.turns or battle.status != "answering":
        raise BillionError("No prompt is waiting for answers: ask one first.")
    if len(battle.turns) == 1 and store_missing(store, battle.id):
        store.create_battle(model_a=battle.model_a.to_record(), model_b=battle.model_b.to_record(),
                            position=battle.position, sampling=asdict(battle.settings),
                            seed=battle.settings.seed, session_id=battle.session_id,
                            live_streaming=battle.live_streaming, battle_id=battle.id)
    store.begin_turn(battle.id, len(battle.turns) - 1, battle.turns[-1].prompt)


def store_missing(store: Store, battle_id: str) -> bool:
    try:
        store.battle_record(battle_id)
    except BillionError:
        return True
    return False


def record_answers(store: Store, battle: Battle) -> None:
    """Store the finished turn's answers and any leak flag."""
    turn = battle.turns[-1]
    if not turn.complete:
        raise BillionError("Both answers must be complete before they are stored.")
    stats = {"a": asdict(turn.stats_a) if turn.stats_a else None,
             "b": asdict(turn.stats_b) if turn.stats_b else None}
    store.finish_turn(battle.id, len(battle.turns) - 1, turn.answer_a, turn.answer_b, stats)
    if battle.flag_reason:
        store.flag_battle(battle.id, battle.flag_reason)


def end_battle(store: Store, battle: Battle) -> bool:
    """Forget an unvoted battle whose answers failed (BattleEnded): it is never stored or voted on.
    Returns whether there was one to forget."""
    return store.discard_battle(battle.id)


def cast_vote(store: Store, battle: Battle, choice: Choice) -> Battle:
    """Vote (checked against the battle state, then stored exactly once); returns the voted battle."""
    voted = vote(battle, choice)
    store.record_vote(battle.id, voted.winner)
    return voted
