"""The application context: everything one app shares, built from its settings, nothing global."""

from __future__ import annotations

import random

from billion.arena.contestants import Contestant
from billion.arena.hub_sync import HubSync
from billion.arena.rounds import cast_vote, record_answers, record_ask
from billion.arena.battle import ask, finish, new_battle
from billion.context import build_context
from billion.core.generation import GenerationResult
from billion.core.sampling import SamplingSettings
from billion.core.settings import Settings


def result(text: str) -> GenerationResult:
    return GenerationResult(model="m", text=text, token_ids=(1,), prompt_tokens=1, ttft_s=0.1,
                            decode_tokens_per_s=1.0, total_s=0.1, peak_memory_bytes=0, finish_reason="eos")


def voted_battle(store) -> str:
    battle = ask(new_battle(Contestant("x"), Contestant("y"), SamplingSettings(), session_id="s",
                            rng=random.Random(0)), "hi")
    record_ask(store, battle)
    battle = finish(battle, result("a"), result("b"))
    record_answers(store, battle)
    return cast_vote(store, battle, "left").id


def test_everything_lives_where_the_settings_say(tmp_path):
    settings = Settings.in_folder(tmp_path / "data", model_budget_bytes=123)
    ctx = build_context(settings)
    assert ctx.store.path == tmp_path / "data" / "billion.sqlite3" and ctx.store.path.is_file()
    assert ctx.runs.root == tmp_path / "data" / "runs" and ctx.runs.store is ctx.store
    assert ctx.models.budget_bytes == 123 and ctx.models.loaded() == []
    assert settings.exports_dir == tmp_path / "data" / "exports"
    assert ctx.hub_sync is None and ctx.store.on_vote is None and ctx.limits is settings.limits
    ctx.close()


def test_two_contexts_share_nothing(tmp_path):
    first = build_context(Settings.in_folder(tmp_path / "one"))
    second = build_context(Settings.in_folder(tmp_path / "two"))
    voted_battle(first.store)
    assert len(first.store.battles_frame()) == 1 and second.store.battles_frame().empty
    assert first.models is not second.models and first.runs is not second.runs
    first.close()
    second.close()


def test_the_store_passes_votes_to_the_arena_hook(tmp_path):
    # The hub copy, wired as build_context wires it, minus the upload (a CommitScheduler's lock only).
    import threading
    from types import SimpleNamespace

    ctx = build_context(Settings.in_folder(tmp_path))
    sync = HubSync(SimpleNamespace(lock=threading.Lock()), tmp_path / "copy.jsonl")
    ctx.store.on_vote = sync.append
    battle_id = voted_battle(ctx.store)
    assert battle_id in (tmp_path / "copy.jsonl").read_text()
    ctx.close()
