"""Blind arena battles: the battle state a UI keeps, its steps, the vote and the reveal.

A `Battle` is an immutable value (kept in gr.State, never in module globals); each step returns a
new one. A UI round (billion.arena.rounds stores each step): start_battle -> ask -> record_ask ->
stream_pending (or answer_pending) -> record_answers -> (ask again, or regenerate ...) ->
cast_vote -> reveal. Identity leaks are found by billion.arena.leaks.
`model_a` and `model_b` are the two contestants as stored; `position` says on which side model_a
sits. The page only shows `public_label(side)` ("Model A" left, "Model B" right) until the vote.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any, Literal

from billion.arena.contestants import Contestant
from billion.arena.leaks import detect_identity_leak, identity_terms
from billion.core.errors import BillionError
from billion.core.limits import DEFAULT_LIMITS, check_prompt
from billion.core.registry import resolve
from billion.core.sampling import SamplingSettings
from billion.arena.blind import ANSWER_FAILED, BattleEnded, blind_errors  # noqa: F401 (re-exported)
from billion.arena.loader import LoadFn, contestant_loader, hold_models  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

Side = Literal["left", "right"]
Seat = Literal["a", "b"]
Choice = Literal["left", "right", "tie", "bothbad"]
Status = Literal["new", "answering", "ready", "voted"]


@dataclass(frozen=True)
class AnswerStats:
    tokens: int
    tokens_per_s: float
    ttft_s: float
    finish_reason: str
    #: weights commit the answer came from ("" when unknown)
    revision: str = ""
    #: what ran, e.g. "int8 (w8a8 per-token, fbgemm)" ("" in battles stored before it was recorded)
    precision: str = ""


@dataclass(frozen=True)
class Turn:
    prompt: str
    #: model_a's answer (whichever side it sits on)
    answer_a: str = ""
    answer_b: str = ""
    stats_a: AnswerStats | None = None
    stats_b: AnswerStats | None = None
    complete: bool = False


@dataclass(frozen=True)
class Battle:
    id: str
    session_id: str
    model_a: Contestant
    model_b: Contestant
    #: the side model_a sits on
    position: Side
    #: shared sampling settings; seed fixed at creation so a battle can be replayed
    settings: SamplingSettings
    live_streaming: bool = False
    turns: tuple[Turn, ...] = ()
    status: Status = "new"
    #: why the battle is left out of ratings (an identity leak), or None
    flag_reason: str | None = None
    winner: str | None = None
    #: prompts asked so far, regenerations included; varies the seed of each ask
    asks: int = 0

    def contestant(self, seat: Seat) -> Contestant:
        return self.model_a if seat == "a" else self.model_b

    def seat(self, side: Side) -> Seat:
        return "a" if (side == "left") == (self.position == "left") else "b"


def public_label(side: Side) -> str:
    """What the page calls a side before the vote: never a name, alias or size."""
    return "Model A" if side == "left" else "Model B"


def validate_prompt(prompt: str, max_chars: int = DEFAULT_LIMITS.arena_prompt_chars) -> str:
    return check_prompt(prompt, max_chars, "the arena", "type a question or draw an example")


def new_battle(model_a: Contestant, model_b: Contestant, settings: SamplingSettings, *,
               session_id: str, rng: random.Random | None = None,
               live_streaming: bool = False) -> Battle:
    """A battle with a random side for model_a and a fixed seed: settings.seed when given (tests,
    replays), else a secret one drawn from the OS (a seed a person knows would let Chat reproduce
    the answers before the vote; see docs/arena.md)."""
    rng = rng or random.SystemRandom()
    settings = settings.validate()
    seed = settings.seed if settings.seed is not None else rng.randrange(2**31)
    # The id never comes from rng: a seeded rng must not make two battles share an id.
    return Battle(id=uuid.uuid4().hex, session_id=session_id, model_a=model_a,
                  model_b=model_b, position=rng.choice(("left", "right")),
                  settings=replace(settings, seed=seed), live_streaming=live_streaming)


# ---- the battle steps ----------------------------------------------------------------------------

def ask(battle: Battle, prompt: str, max_chars: int = DEFAULT_LIMITS.arena_prompt_chars) -> Battle:
    """Add a prompt for both contestants (a new turn); answers come from answer_pending."""
    text = validate_prompt(prompt, max_chars)
    if battle.status == "voted":
        raise BillionError("This battle already has its vote: start a new round.")
    if battle.status == "answering":
        raise BillionError("Both models are still answering: wait for them.")
    return replace(battle, turns=(*battle.turns, Turn(text)), status="answering",
                   asks=battle.asks + 1)


def regenerate(battle: Battle) -> Battle:
    """Ask the last prompt again (new seed), dropping both previous answers to it."""
    if battle.status == "voted":
        raise BillionError("This battle already has its vote: start a new round.")
    if battle.status != "ready":
        raise BillionError("Nothing to regenerate yet: wait for both answers.")
    last = battle.turns[-1]
    return replace(battle, turns=(*battle.turns[:-1], Turn(last.prompt)), status="answering",
                   asks=battle.asks + 1)


def abandon_pending(battle: Battle) -> Battle:
    """Drop a prompt whose answers never came (the run failed or was cancelled), so it can be
    asked again; any other battle is returned as is."""
    if battle.status != "answering":
        return battle
    turns = battle.turns[:-1]
    return replace(battle, turns=turns, status="ready" if turns else "new")


def messages_for(battle: Battle, seat: Seat) -> list[dict[str, str]]:
    """One contestant's own conversation: earlier prompts, its own answers, the pending prompt."""
    messages: list[dict[str, str]] = []
    for turn in battle.turns:
        messages.append({"role": "user", "content": turn.prompt})
        if turn.complete:
            answer = turn.answer_a if seat == "a" else turn.answer_b
            messages.append({"role": "assistant", "content": answer})
    return messages


def settings_for(battle: Battle, seat: Seat) -> SamplingSettings:
    """The contestant's settings with this ask's seed (the same for both sides: a fair draw)."""
    contestant = battle.contestant(seat)
    base = contestant.settings or battle.settings
    if contestant.temperature is not None:
        base = replace(base, temperature=contestant.temperature)
    return replace(base, seed=(battle.settings.seed or 0) + battle.asks)


def _stats(result: Any, revision: str) -> AnswerStats:
    # Endpoint answers come as text, with the server's token count instead of ids.
    tokens = getattr(result, "completion_tokens", None) or len(result.token_ids)
    return AnswerStats(tokens=tokens, tokens_per_s=float(result.decode_tokens_per_s),
                       ttft_s=float(result.ttft_s), finish_reason=result.finish_reason,
                       revision=revision, precision=getattr(result, "precision", ""))


def finish(battle: Battle, result_a: Any, result_b: Any,
           revisions: tuple[str, str] = ("", "")) -> Battle:
    """Fill the pending turn with both answers (GenerationResult-like), check for leaks: ready to vote."""
    if battle.status != "answering":
        raise BillionError("No prompt is waiting for answers: ask one first.")
    turn = replace(battle.turns[-1], answer_a=result_a.text, answer_b=result_b.text,
                   stats_a=_stats(result_a, revisions[0]), stats_b=_stats(result_b, revisions[1]),
                   complete=True)
    terms = identity_terms((battle.model_a, battle.model_b))
    reason = battle.flag_reason or detect_identity_leak(turn.answer_a, terms) \
        or detect_identity_leak(turn.answer_b, terms)
    return replace(battle, turns=(*battle.turns[:-1], turn), status="ready", flag_reason=reason)


GenerateFn = Callable[[Any, list, SamplingSettings], Any]


def answer_pending(battle: Battle, load: LoadFn, generate: GenerateFn | None = None) -> Battle:
    """Generate both answers to the pending prompt; both are released together (blind)."""
    if generate is None:
        from billion.endpoints.client import generate_answer as generate
    from billion.endpoints.client import generate_pair

    with ExitStack() as held, blind_errors(battle):
        loaded = hold_models((battle.model_a, battle.model_b), load, held)
        results = generate_pair(generate, [(model, messages_for(battle, seat), settings_for(battle, seat))
                                           for model, seat in zip(loaded, ("a", "b"))])
    return finish(battle, *results, revisions=tuple(getattr(m, "revision", "") for m in loaded))


def answer_turn(battle: Battle, prompt: str, load: LoadFn, generate: GenerateFn | None = None) -> Battle:
    """ask + answer_pending: one whole turn."""
    return answer_pending(ask(battle, prompt), load, generate)


def stream_pending(battle: Battle, load: LoadFn) -> Iterator[Battle]:
    """Battles to show while answering. Blind (default): only the finished battle, since the pace
    of a stream gives a model away; with battle.live_streaming, partial answers as they grow."""
    from billion.core.generation import interleave
    from billion.endpoints.client import stream_answer

    if not battle.live_streaming:
        yield answer_pending(battle, load)
        return
    with ExitStack() as held:  # both models leased until the streams end or the page leaves
        with blind_errors(battle):
            loaded = hold_models((battle.model_a, battle.model_b), load, held)
            streams = [stream_answer(model, messages_for(battle, seat), settings_for(battle, seat))
                       for model, seat in zip(loaded, ("a", "b"))]
        updates: tuple = (None, None)
        with blind_errors(battle):
            for updates in interleave(*streams):
                partial = replace(battle.turns[-1], answer_a=updates[0].text if updates[0] else "",
                                  answer_b=updates[1].text if updates[1] else "")
                yield replace(battle, turns=(*battle.turns[:-1], partial))
    yield finish(battle, updates[0].result, updates[1].result,
                 revisions=tuple(getattr(m, "revision", "") for m in loaded))


def conversation(battle: Battle, side: Side) -> list[dict[str, str]]:
    """Chat messages of one side for display (gr.Chatbot format); no names in them."""
    seat = battle.seat(side)
    messages: list[dict[str, str]] = []
    for turn in battle.turns:
        messages.append({"role": "user", "content": turn.prompt})
        answer = turn.answer_a if seat == "a" else turn.answer_b
        if answer:
            messages.append({"role": "assistant", "content": answer})
    return messages


# ---- vote and reveal -----------------------------------------------------------------------------

def winner_for(battle: Battle, choice: Choice) -> str:
    """A button press on the page ('left', 'right', 'tie', 'bothbad') -> stored winner."""
    if choice in ("left", "right"):
        return f"model_{battle.seat(choice)}"
    if choice == "tie":
        return "tie"
    if choice == "bothbad":
        return "tie (bothbad)"
    raise BillionError(f"Unknown vote {choice!r}: use left, right, tie or bothbad.")


def vote(battle: Battle, choice: Choice) -> Battle:
    """The voted battle (pure; cast_vote also stores it)."""
    if battle.status == "voted":
        raise BillionError("This battle already has its vote: start a new round.")
    if battle.status != "ready":
        raise BillionError("Both answers must be complete before voting: wait for them.")
    return replace(battle, status="voted", winner=winner_for(battle, choice))


@dataclass(frozen=True)
class RevealedSide:
    label: str
    name: str
    display_name: str
    size: str
    dtype: str
    adapter: str | None
    #: mean decode speed over this battle's turns
    tokens_per_s: float


@dataclass(frozen=True)
class Reveal:
    left: RevealedSide
    right: RevealedSide
    #: winning contestant's name, "tie" or "both bad"
    outcome: str
    flag_reason: str | None


def _revealed(battle: Battle, side: Side) -> RevealedSide:
    seat = battle.seat(side)
    contestant = battle.contestant(seat)
    try:
        spec = resolve(contestant.alias)
        display, size = spec.display_name, (spec.size_label if spec.params_m else "?")
    except BillionError:
        display, size = contestant.alias, "?"
    stats = [s for t in battle.turns if (s := t.stats_a if seat == "a" else t.stats_b)]
    speeds = [s.tokens_per_s for s in stats]
    if contestant.endpoint is not None:
        display = f"{contestant.endpoint.label} (over the network, from {contestant.endpoint.host})"
    # The precision that ran (auto resolves per machine), else the one asked for.
    precision = next((s.precision for s in reversed(stats) if s.precision), contestant.dtype)
    return RevealedSide(public_label(side), contestant.name, display, size, precision,
                        contestant.adapter, sum(speeds) / len(speeds) if speeds else 0.0)


def reveal(battle: Battle) -> Reveal:
    """Names, sizes and speeds: only once the battle has its vote."""
    if battle.status != "voted":
        raise BillionError("Names are revealed only after the vote: vote first.")
    outcome = {"model_a": battle.model_a.name, "model_b": battle.model_b.name,
               "tie": "tie", "tie (bothbad)": "both bad"}[battle.winner or ""]
    return Reveal(_revealed(battle, "left"), _revealed(battle, "right"), outcome, battle.flag_reason)
