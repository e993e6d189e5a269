"""Arena battles: blind labels, pair choice, leaks, the whole flow with real tiny models and store."""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import replace

import pandas as pd
import pytest

from billion.arena import battle as arena
from billion.arena.battle import (ANSWER_FAILED, BattleEnded, abandon_pending, answer_pending, answer_turn,
                                  ask, contestant_loader, conversation, finish, messages_for, new_battle,
                                  public_label, regenerate, reveal, settings_for, validate_prompt, vote,
                                  winner_for)
from billion.arena.contestants import Contestant
from billion.arena.rounds import cast_vote, record_answers, record_ask
from billion.cli import settings_for as cli_settings
from billion.commands import arena as arena_command
from billion.context import build_context
from billion.core.errors import BillionError
from billion.core.generation import GenerationResult
from billion.core.limits import DEFAULT_LIMITS
from billion.core.sampling import SamplingSettings
from billion.store.store import Store
from evicting import Evictor, budget_for, cached, in_thread

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work on a shared 2-core CPU (conftest.py)

SETTINGS = SamplingSettings(temperature=0.8, max_new_tokens=6)
MAX_PROMPT_CHARS = DEFAULT_LIMITS.arena_prompt_chars


def result(text: str, tps: float = 10.0) -> GenerationResult:
    return GenerationResult(model="m", text=text, token_ids=(1, 2, 3), prompt_tokens=4, ttft_s=0.1,
                            decode_tokens_per_s=tps, total_s=0.4, peak_memory_bytes=0,
                            finish_reason="eos")


def battle_of(a: str = "smollm2-135m", b: str = "gemma3-270m", seed: int = 0, **kw) -> arena.Battle:
    return new_battle(Contestant(a), Contestant(b), SETTINGS, session_id="s", rng=random.Random(seed), **kw)


def answered(battle: arena.Battle, text_a: str = "four", text_b: str = "4") -> arena.Battle:
    return finish(ask(battle, "2+2?"), result(text_a, 20.0), result(text_b, 5.0))


# ---- labels, prompts, contestants ------------------------------------------------------------------

def test_public_labels_and_conversation_hide_names():
    battle = answered(battle_of())
    for side in ("left", "right"):
        shown = json.dumps([public_label(side), conversation(battle, side)]).lower()
        for secret in ("smollm", "gemma", "135", "270"):
            assert secret not in shown
    assert (public_label("left"), public_label("right")) == ("Model A", "Model B")


def test_conversation_follows_position():
    for seed in range(6):
        battle = answered(battle_of(seed=seed))
        left_answer = conversation(battle, "left")[-1]["content"]
        assert left_answer == ("four" if battle.position == "left" else "4")
        assert battle.seat("left") == ("a" if battle.position == "left" else "b")


def test_validate_prompt():
    for bad in ("", "   \n ", None):
        with pytest.raises(BillionError, match="empty"):
            validate_prompt(bad)
    with pytest.raises(BillionError, match=f"at most {MAX_PROMPT_CHARS}"):
        validate_prompt("x" * (MAX_PROMPT_CHARS + 1))
    assert validate_prompt("  " + "x" * MAX_PROMPT_CHARS + " ") == "x" * MAX_PROMPT_CHARS
    # The app's own limit, when its settings set one, is the one asked for.
    with pytest.raises(BillionError, match="at most 10"):
        ask(battle_of(), "x" * 11, max_chars=10)


def test_new_battle_randomises_side_and_fixes_seed():
    battles = [battle_of(seed=s) for s in range(40)]
    assert {b.position for b in battles} == {"left", "right"}
    assert all(b.settings.seed is not None and b.status == "new" for b in battles)
    assert len({b.id for b in battles}) == 40
    fixed = new_battle(Contestant("x"), Contestant("y"), replace(SETTINGS, seed=5), session_id="s")
    assert fixed.settings.seed == 5


# ---- identity leaks flag the battle -------------------------------------------------------------------

def test_leak_naming_own_alias_flags_battle():
    battle = battle_of("my-finetune", "gemma3-270m")
    flagged = finish(ask(battle, "who are you?"), result("I am my-finetune."), result("A helper."))
    assert flagged.flag_reason and "my-finetune" in flagged.flag_reason
    assert answered(battle).flag_reason is None


# ---- battle steps -----------------------------------------------------------------------------------

def test_vote_before_answers_and_twice_is_refused():
    battle = battle_of()
    with pytest.raises(BillionError, match="complete before voting"):
        vote(battle, "left")
    pending = ask(battle, "hi")
    with pytest.raises(BillionError, match="complete before voting"):
        vote(pending, "left")
    with pytest.raises(BillionError, match="still answering"):
        ask(pending, "again")
    voted = vote(finish(pending, result("a"), result("b")), "tie")
    with pytest.raises(BillionError, match="already has its vote"):
        vote(voted, "left")
    with pytest.raises(BillionError, match="already has its vote"):
        ask(voted, "more")


def test_winner_follows_the_side_clicked():
    for seed in range(6):
        battle = battle_of(seed=seed)
        left_seat = battle.seat("left")
        assert winner_for(battle, "left") == f"model_{left_seat}"
        assert winner_for(battle, "right") != winner_for(battle, "left")
    assert (winner_for(battle, "tie"), winner_for(battle, "bothbad")) == ("tie", "tie (bothbad)")
    with pytest.raises(BillionError, match="Unknown vote"):
        winner_for(battle, "a")


def test_reveal_only_after_vote():
    battle = answered(battle_of())
    with pytest.raises(BillionError, match="after the vote"):
        reveal(battle)
    shown = reveal(vote(battle, "left"))
    by_side = {shown.left.name: shown.left, shown.right.name: shown.right}
    assert by_side["smollm2-135m"].size == "135M" and by_side["gemma3-270m"].size == "268M"
    assert by_side["smollm2-135m"].tokens_per_s == 20.0 and by_side["gemma3-270m"].tokens_per_s == 5.0
    assert shown.outcome == (shown.left.name)
    assert (shown.left.label, shown.right.label) == ("Model A", "Model B")


def test_reveal_names_the_precision_that_ran():
    battle = finish(ask(battle_of(), "2+2?"), replace(result("four"), precision="int8 (w8a8 per-token, fbgemm)"),
                    result("4"))
    shown = reveal(vote(battle, "left"))
    by_name = {shown.left.name: shown.left, shown.right.name: shown.right}
    assert by_name["smollm2-135m"].dtype == "int8 (w8a8 per-token, fbgemm)"
    assert by_name["gemma3-270m"].dtype == "auto"  # nothing recorded: the precision asked for
    assert "int8 (w8a8 per-token, fbgemm)" in arena_ui_reveal(shown)


def arena_ui_reveal(shown) -> str:
    from billion.ui.arena import reveal_markdown

    return reveal_markdown(shown)


def test_multi_turn_each_side_sees_its_own_answers_and_regenerate_reseeds():
    battle = answered(battle_of())
    battle = ask(battle, "and 3+3?")
    assert [m["content"] for m in messages_for(battle, "a")] == ["2+2?", "four", "and 3+3?"]
    assert [m["content"] for m in messages_for(battle, "b")] == ["2+2?", "4", "and 3+3?"]
    assert settings_for(battle, "a") == settings_for(battle, "b")
    battle = finish(battle, result("six"), result("6"))
    again = regenerate(battle)
    assert again.status == "answering" and again.turns[-1].answer_a == "" and len(again.turns) == 2
    assert settings_for(again, "a").seed != settings_for(battle, "a").seed
    per_side = Contestant("x", settings=SamplingSettings(temperature=0.0))
    own = replace(battle, model_a=per_side)
    assert settings_for(own, "a").temperature == 0.0 and settings_for(own, "b").temperature == 0.8


def test_temperature_variant_overrides_only_temperature():
    battle = new_battle(Contestant("m", temperature=0.2), Contestant("m", temperature=1.0),
                        SETTINGS, session_id="s", rng=random.Random(0))
    battle = ask(battle, "hi")
    a, b = settings_for(battle, "a"), settings_for(battle, "b")
    assert (a.temperature, b.temperature) == (0.2, 1.0)
    assert a.max_new_tokens == b.max_new_tokens == SETTINGS.max_new_tokens and a.seed == b.seed


def test_abandon_pending_lets_a_failed_prompt_be_asked_again():
    first = ask(battle_of(), "2+2?")
    assert abandon_pending(first).status == "new" and abandon_pending(first).turns == ()
    ready = answered(battle_of())
    assert abandon_pending(ready) is ready
    pending = ask(ready, "and 3+3?")
    dropped = abandon_pending(pending)
    assert dropped.status == "ready" and dropped.turns == ready.turns
    assert ask(dropped, "and 3+3?").turns[-1].prompt == "and 3+3?"


# ---- whole flow with real tiny models and a real store -----------------------------------------------

@pytest.fixture
def tiny_pair(tiny_dir):
    # The same tiny model at two settings: the "one model at two settings" battle.
    return (Contestant(str(tiny_dir), settings=SamplingSettings(temperature=0.0, max_new_tokens=5)),
            Contestant(str(tiny_dir), settings=SamplingSettings(temperature=1.0, max_new_tokens=5)))


def test_whole_battle_with_tiny_models_and_store(tiny_pair, tmp_path, models):
    load = contestant_loader(models)
    store = Store(tmp_path / "arena.sqlite3")
    battle = new_battle(*tiny_pair, SETTINGS, session_id="sess", rng=random.Random(0))
    battle = ask(battle, "Hello there")
    record_ask(store, battle)
    with pytest.raises(BillionError, match="complete before voting"):
        cast_vote(store, battle, "left")
    with pytest.raises(BillionError, match="complete before voting"):
        store.record_vote(battle.id, "model_a")
    battle = answer_pending(battle, load)
    assert battle.status == "ready" and battle.turns[-1].stats_a.tokens <= 5
    record_answers(store, battle)
    battle = ask(battle, "Tell me more")
    record_ask(store, battle)
    with pytest.raises(BillionError, match="complete before voting"):
        store.record_vote(battle.id, "model_a")  # turn 2 still pending in the store
    battle = answer_pending(battle, load)
    record_answers(store, battle)
    voted = cast_vote(store, battle, "right")
    with pytest.raises(BillionError, match="already has its vote"):
        cast_vote(store, battle, "left")
    stored = store.battle_record(battle.id)
    assert stored["winner"] == voted.winner == winner_for(battle, "right")
    assert [t["prompt"] for t in stored["turns"]] == ["Hello there", "Tell me more"]
    assert stored["turns"][1]["answer_a"] == battle.turns[1].answer_a
    assert stored["contestant_a"]["name"] == battle.model_a.name != battle.model_b.name
    assert stored["seed"] == battle.settings.seed and stored["position"] == battle.position
    winner = battle.model_a if voted.winner == "model_a" else battle.model_b
    assert reveal(voted).outcome == winner.name
    store.close()


def test_blind_release_yields_once_live_streams_partials(tiny_pair, models):
    load = contestant_loader(models)
    blind = list(arena.stream_pending(ask(new_battle(*tiny_pair, SETTINGS, session_id="s"), "Hi"), load))
    assert len(blind) == 1 and blind[0].status == "ready"
    live = list(arena.stream_pending(ask(new_battle(*tiny_pair, SETTINGS, session_id="s",
                                                    live_streaming=True), "Hi"), load))
    assert len(live) > 2 and live[-1].status == "ready" and live[-1].turns[-1].complete
    assert all(b.status == "answering" and not b.turns[-1].complete for b in live[:-1])
    final = live[-1].turns[-1]
    assert any(0 < len(b.turns[-1].answer_a) < len(final.answer_a) or
               0 < len(b.turns[-1].answer_b) < len(final.answer_b) for b in live[:-1])


def test_a_battle_keeps_both_models_while_another_session_evicts(tiny_dir, models):
    from billion.core.loading import LoadOptions
    from billion.endpoints.client import generate_answer

    greedy = SamplingSettings(temperature=0.0, max_new_tokens=6)
    pair = (Contestant(str(tiny_dir), dtype="fp32"), Contestant(str(tiny_dir), dtype="bf16"))
    reference = answer_pending(ask(new_battle(*pair, greedy, session_id="s"), "Hi"), contestant_loader(models))
    cache = budget_for(*(models.load(c.alias, c.load_options()) for c in pair))  # room for these two only
    evictor = Evictor(cache, str(tiny_dir), LoadOptions(dtype="fp32", device="cpu"))
    kept = []

    def generate(model, messages, settings):
        evictor.evict_now()  # both models loaded and answering: the other session's load comes now
        kept.append(cached(cache, model))
        return generate_answer(model, messages, settings)

    battle = ask(new_battle(*pair, greedy, session_id="s"), "Hi")
    answered = in_thread(lambda: answer_pending(battle, contestant_loader(cache), generate))
    evictor.join()
    assert kept == [True, True] and evictor.calls == 2
    assert answered.status == "ready"
    assert [answered.turns[-1].answer_a, answered.turns[-1].answer_b] == \
        [reference.turns[-1].answer_a, reference.turns[-1].answer_b]
    assert cache.in_use() == [] and cache.used_bytes() <= cache.budget_bytes


def test_lora_adapter_contestant_battles_its_base(tiny_dir, tmp_path, models):
    # A real (random, nonzero) LoRA adapter on the tiny model, registered as a trainer would.
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from billion.arena.contestants import register_adapter_contestant

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    lora = get_peft_model(base, LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    lora.save_pretrained(tmp_path / "lora-run")
    store = Store(tmp_path / "arena.sqlite3")
    tuned = register_adapter_contestant(tmp_path / "lora-run", str(tiny_dir), "tuned", store=store)
    greedy = SamplingSettings(temperature=0.0, max_new_tokens=8)
    base_contestant = Contestant(str(tiny_dir))
    battle = new_battle(base_contestant, tuned, greedy, session_id="s", rng=random.Random(0))
    battle = answer_turn(battle, "Hello there", contestant_loader(models))
    turn = battle.turns[-1]
    assert turn.complete and turn.answer_a != turn.answer_b
    shown = reveal(vote(battle, "tie"))
    adapters = {side.name: side.adapter for side in (shown.left, shown.right)}
    assert adapters == {base_contestant.name: None, tuned.name: tuned.adapter}
    store.close()


def test_answer_turn_with_plain_functions(tiny_pair, models):
    # load/generate are injectable: any callables with the loading/generation signatures.
    from billion.core.generation import generate_chat

    calls = []

    def load(contestant):
        calls.append(contestant.name)
        return models.load(contestant.alias, contestant.load_options())

    battle = answer_turn(new_battle(*tiny_pair, SETTINGS, session_id="s"), "Hi", load, generate_chat)
    assert battle.status == "ready" and calls == [tiny_pair[0].name, tiny_pair[1].name]
    with pytest.raises(BillionError, match="empty"):
        answer_turn(battle, "  ", load, generate_chat)


# ---- CLI --------------------------------------------------------------------------------------------

def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    arena_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    ctx = build_context(cli_settings(args))  # as billion.cli builds it: the store --db names
    try:
        return args.func(args, ctx)
    finally:
        ctx.store.close()


def test_cli_ratings_and_export(tmp_path, capsys):
    db = tmp_path / "cli.sqlite3"
    store = Store(db)
    rng = random.Random(0)
    for n in range(40):
        battle = ask(battle_of("strong", "weak", seed=n), "2+2?")
        record_ask(store, battle)
        battle = finish(battle, result("four"), result("4"))
        record_answers(store, battle)
        strong_side = "left" if battle.seat("left") == "a" else "right"
        other = "right" if strong_side == "left" else "left"
        cast_vote(store, battle, strong_side if rng.random() < 0.8 else other)
    store.close()
    assert run_cli(["arena", "--ratings", "--rounds", "20", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["rank", "model", "rating"]
    assert lines[2].split()[1] == "strong" and "40 battles counted" in lines[-1]
    assert run_cli(["arena", "--export", str(tmp_path / "all.jsonl"), "--db", str(db)]) == 0
    assert len((tmp_path / "all.jsonl").read_text().splitlines()) == 40
    assert run_cli(["arena", "--export", str(tmp_path / "all.csv"), "--db", str(db)]) == 0
    assert len(pd.read_csv(tmp_path / "all.csv")) == 40
    with pytest.raises(BillionError, match=".jsonl or .csv"):
        run_cli(["arena", "--export", str(tmp_path / "all.txt"), "--db", str(db)])


def test_errors_while_answering_name_no_model_side_or_size():
    """Issue 13, finding 3: "...exceeds Model A's context of 8192 tokens" told who Model A was.
    Any failure before the vote now ends the battle with one message that says nothing of either."""
    battle = ask(battle_of("smollm2-135m", "gemma3-270m"), "hi")

    def load_fails(contestant):
        raise BillionError(f"Not enough memory to load {contestant.alias}: pick a smaller model.")

    def too_long(loaded, messages, settings):
        raise BillionError("The prompt (9000 tokens) plus max_new_tokens (256) exceeds Model A's "
                           "context of 8192 tokens: shorten the prompt or lower max_new_tokens.")

    def crashes(loaded, messages, settings):
        raise RuntimeError("gemma3-270m exploded")

    messages = set()
    for load, generate in ((load_fails, None), (lambda c: c, too_long), (lambda c: c, crashes)):
        with pytest.raises(BattleEnded) as caught:
            answer_pending(battle, load, generate)
        messages.add(str(caught.value))
    assert messages == {ANSWER_FAILED}
    assert "one of the answers" in ANSWER_FAILED.lower() and "unrecorded" in ANSWER_FAILED
    assert not any(word in ANSWER_FAILED.lower() for word in ("model a", "model b", "smollm", "gemma",
                                                              "context", "8192", "memory"))
    assert not any(ch.isdigit() for ch in ANSWER_FAILED)
