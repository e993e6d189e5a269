"""The reload hooks of the Chat, Arena and trainer tabs over a real session store (fast; the browser
tests in tests/test_browser.py, marked slow, click through the same with a real page)."""

from __future__ import annotations

import secrets

import gradio as gr

from billion.arena.battle import ask, new_battle, vote
from billion.arena.contestants import Contestant
from billion.core.sampling import SamplingSettings
from billion.ui.arena_session import keep_battle, kept_battle
from billion.ui.chat import CUT_NOTE, keep_chat, restore_chat
from billion.ui.session import identify_page, saving
from billion.ui.trainer_session import FILE_KIND, keep_form, keep_upload, restore_form



def token() -> str:
    return secrets.token_hex(16)


def test_a_page_keeps_a_valid_token_and_replaces_a_bad_one():
    mine = token()
    assert identify_page(mine) == (mine, mine)
    fresh, same = identify_page("not-a-token")
    assert fresh == same and fresh != "not-a-token" and len(fresh) == 32


def test_saving_keeps_the_last_update_of_a_stream_cut_short():
    saved = []

    def stream(prompt):
        yield from (prompt + "a", prompt + "ab", prompt + "abc")

    run = saving(stream, lambda key, inputs, update, cut: saved.append((key, inputs, update, cut)))
    updates = run("x", "tok")
    assert next(updates) == "xa"
    assert next(updates) == "xab"
    updates.close()  # what Gradio does when the page goes away or Stop cancels
    assert saved[-1] == ("tok", ("x",), "xab", True)
    saved.clear()
    assert list(run("y", "tok")) == ["ya", "yab", "yabc"]
    assert saved[-1][2:] == ("yabc", False)
    saved.clear()
    assert list(run("z", None)) == ["za", "zab", "zabc"] and not saved  # an API call: no token


def test_chat_comes_back_for_its_browser_only(ctx):
    mine = token()
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "text", "text": "Ahoy"}]}]
    keep_chat(ctx, mine, ("hi", [], [], False, "smollm2-135m", "smollm2-135m"), (history, [], "", "", ""), True)
    a, b, note, compare, *_ = restore_chat(ctx, mine)
    assert a == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Ahoy"}]
    assert b == [] and note == CUT_NOTE and compare["value"] is False
    assert all(update == gr.update() for update in restore_chat(ctx, token()))


def test_a_long_chat_keeps_its_latest_turns(ctx):
    mine, turn = token(), "x" * 1000
    history = [{"role": r, "content": f"{i} {turn}"} for i in range(800) for r in ("user", "assistant")]
    keep_chat(ctx, mine, ("", [], [], False, "m", "m"), (history, [], "", "", ""), False)
    kept = restore_chat(ctx, mine)[0]
    assert 0 < len(kept) < len(history) and kept[-1] == history[-1]


def battle():
    one = Contestant("smollm2-135m", temperature=0.2)
    other = Contestant("smollm2-135m", temperature=1.0)
    return ask(new_battle(one, other, SamplingSettings(seed=1), session_id="s"), "Name a fruit.")


def test_an_open_battle_comes_back_and_a_voted_one_does_not(ctx):
    mine, open_battle = token(), battle()
    keep_battle(ctx, mine, open_battle)
    assert kept_battle(ctx, mine, lambda b: False) == open_battle
    assert kept_battle(ctx, token(), lambda b: False) is None
    assert kept_battle(ctx, mine, lambda b: True) is None  # ended by a failed answer: forgotten
    assert kept_battle(ctx, mine, lambda b: False) is None
    keep_battle(ctx, mine, open_battle)
    answered = open_battle.__class__(**{**open_battle.__dict__, "status": "ready"})
    keep_battle(ctx, mine, vote(answered, "left"))
    assert kept_battle(ctx, mine, lambda b: False) is None


def test_the_trainer_form_and_file_come_back(ctx, tmp_path):
    mine, names = token(), ("model", "max_steps", "prompts")
    keep_form(ctx, names, mine, "smollm2-135m", 7, "Where is the treasure?")
    data = tmp_path / "pirate.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n')
    keep_upload(ctx, mine, str(data), dataset=object())
    *fields, upload = restore_form(ctx, names, {"smollm2-135m"}, mine)
    assert [f["value"] for f in fields] == ["smollm2-135m", 7, "Where is the treasure?"]
    assert upload.endswith("pirate.jsonl") and open(upload).read() == data.read_text()
    *fields, upload = restore_form(ctx, names, {"another-model"}, mine)
    assert fields[0] == gr.update()  # a model no longer offered stays at the default
    assert all(f == gr.update() for f in restore_form(ctx, names, set(), token()))
    keep_upload(ctx, mine, None, None)  # the file cleared on the page
    assert ctx.sessions.kept_file(mine, FILE_KIND) is None
