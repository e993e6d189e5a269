"""The Arena tab against the real launched app with the offline SmolLM2 (gradio_client and raw HTTP).

Blindness is checked on what actually leaves the server: every output of every call before the
vote, as JSON text, against every registry model's alias, display name, hub id, family and size.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid

import gradio as gr
import httpx
import pandas as pd
import pytest
from app_server import serve_app
from gradio_client import Client
from gradio_client.exceptions import AppError

from billion.core.limits import DEFAULT_LIMITS
from billion.core.registry import MODELS

pytestmark = [
    pytest.mark.skipif(
        not any(m.alias == "smollm2-135m" for m in MODELS), reason="needs the offline SmolLM2 entry"),
    pytest.mark.usefixtures("one_thread"),  # tiny work on a shared 2-core CPU (conftest.py)
]

SECRETS = sorted({s.lower() for m in MODELS
                  for s in (m.alias, m.display_name, m.hub_id, m.family, m.size_label) if s})
TOKENS = 12  # enough for an answer, small enough to keep the file fast on a CPU
PAIR = {"smollm2-135m [T=0.2]", "smollm2-135m [T=1]"}
MAX_PROMPT_CHARS = DEFAULT_LIMITS.arena_prompt_chars


def battle_args(prompt: str, tokens: int = TOKENS, live: bool = False, seed: int = -1) -> tuple:
    # prompt, pool, temperature, top_p, max_new_tokens, seed (-1: the Arena's secret one, the only
    # one it takes), live streaming, precision
    return (prompt, "temperature", 0.7, 0.95, tokens, seed, live, "auto")


def assert_blind(payload) -> None:
    text = json.dumps(payload, default=str).lower()
    found = [s for s in SECRETS if s in text]
    assert not found, f"names reached the client before the vote: {found} in {text[:300]}"


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


@pytest.fixture(scope="module")
def served(tmp_path_factory, models):
    """(url, store path): the whole app on a fresh store of its own."""
    data = tmp_path_factory.mktemp("arena-app")
    with serve_app(data, "votes.sqlite3", models=models) as url:
        yield url, data / "votes.sqlite3"


def rows(db, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the store file with plain sqlite3, as a restarted process would."""
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def battle(client: Client, prompt: str, **kw) -> tuple[tuple, list]:
    """One arena_battle call: (final outputs, every output the client received)."""
    job = client.submit(*battle_args(prompt, **kw), api_name="/arena_battle")
    final = job.result(timeout=300)
    return final, job.outputs()


# ---- the whole round ------------------------------------------------------------------------------

def test_whole_battle_is_blind_until_the_vote(served):
    url, db = served
    client = Client(url, verbose=False)
    final, outputs = battle(client, "Name three colours.")
    left, right, token, status, revealed, prompt_box = final
    # Blind release: one update while answering (no answers), then both answers at once.
    assert [len(o[0]) for o in outputs] == [1, 2] and [len(o[1]) for o in outputs] == [1, 2]
    assert text_of(left[-1]) and text_of(right[-1]) and "vote" in status.lower()
    assert revealed == "" and prompt_box == "" and len(token) == 32
    seen = list(outputs)
    again = client.predict(api_name="/arena_regenerate")
    seen.append(again)
    assert again[2] == token and len(again[0]) == 2
    final, outputs = battle(client, "Now name three animals.")
    seen += outputs
    assert final[2] == token and len(final[0]) == len(final[1]) == 4  # a follow-up, same battle
    for payload in seen:
        assert_blind(payload)

    markdown, record, status = client.predict("left", token, api_name="/arena_vote")
    assert record["battle"] == token and {record["left"]["name"], record["right"]["name"]} == PAIR
    assert record["outcome"] == record["left"]["name"] and "SmolLM2-135M-Instruct" in markdown
    assert record["left"]["tokens_per_s"] > 0 and record["left"]["size"] == "135M"
    # Stored once, durably, with the side the person clicked.
    [(vote, position, model_a, turns)] = rows(
        db, "SELECT vote, position, model_a, (SELECT COUNT(*) FROM turns WHERE battle_id = b.id) "
            "FROM battles b WHERE id = ?", (token,))
    assert vote == ("model_a" if position == "left" else "model_b") and turns == 2
    assert (model_a == record["left"]["name"]) == (position == "left")


def test_raw_payloads_carry_no_names_and_no_state(served):
    """What the browser's transport carries, byte for byte: the State slot is always null."""
    url, _ = served
    session = uuid.uuid4().hex

    def call(api: str, data: list) -> str:
        with httpx.Client(base_url=url + "gradio_api/", timeout=300) as http:
            event = http.post(f"call/{api}", json={"data": data, "session_hash": session})
            event.raise_for_status()
            return http.get(f"call/{api}/{event.json()['event_id']}").text

    stream = call("arena_battle", list(battle_args("Give me one tip for sleeping well.")))
    assert "event: complete" in stream
    assert_blind(stream)
    payloads = [json.loads(line[len("data: "):]) for line in stream.splitlines()
                if line.startswith("data: [")]
    assert payloads and all(len(p) == 7 and p[-1] is None for p in payloads)
    token = payloads[-1][2]
    revealed = call("arena_vote", ["right", token])
    # The names were there all along, on the server: the check above was not vacuous.
    assert "event: complete" in revealed and "smollm2-135m" in revealed.lower()


def test_page_config_names_no_model(ctx):
    from billion.ui.arena import build_arena_tab

    with gr.Blocks() as page:
        build_arena_tab(ctx)
    assert_blind(page.get_config_file())


# ---- bad input --------------------------------------------------------------------------------------

def test_bad_input_is_refused_and_nothing_is_recorded_twice(served):
    url, db = served
    client = Client(url, verbose=False)
    battles_before = rows(db, "SELECT COUNT(*) FROM battles")[0][0]
    with pytest.raises(AppError, match="empty"):
        client.predict(*battle_args("   "), api_name="/arena_battle")
    with pytest.raises(AppError, match=f"at most {MAX_PROMPT_CHARS}"):
        client.predict(*battle_args("x" * (MAX_PROMPT_CHARS + 1)), api_name="/arena_battle")
    with pytest.raises(AppError, match="no battle to vote on"):
        client.predict("left", "", api_name="/arena_vote")
    assert rows(db, "SELECT COUNT(*) FROM battles")[0][0] == battles_before

    token = battle(client, "What is 2 + 2?")[0][2]
    with pytest.raises(AppError, match="not the one open in this session"):
        client.predict("left", uuid.uuid4().hex, api_name="/arena_vote")
    with pytest.raises(AppError):
        client.predict("A", token, api_name="/arena_vote")  # not one of the four choices
    client.predict("tie", token, api_name="/arena_vote")
    with pytest.raises(AppError, match="already has its vote"):
        client.predict("right", token, api_name="/arena_vote")
    other = Client(url, verbose=False)  # another session cannot vote on this battle
    with pytest.raises(AppError, match="no battle to vote on"):
        other.predict("left", token, api_name="/arena_vote")
    assert rows(db, "SELECT vote FROM battles WHERE id = ?", (token,)) == [("tie",)]
    assert rows(db, "SELECT COUNT(*) FROM battles")[0][0] == battles_before + 1


def test_vote_while_answering_is_refused_then_the_battle_goes_on(served):
    url, db = served
    client = Client(url, verbose=False)
    job = client.submit(*battle_args("Count from 1 to 100, separated by commas.", tokens=200,
                                     live=True), api_name="/arena_battle")
    deadline = time.monotonic() + 120
    while len(job.outputs()) < 3 and time.monotonic() < deadline:  # answering, partial answers
        time.sleep(0.1)
    partial = job.outputs()[-1]
    token = partial[2]
    assert_blind(job.outputs())
    with pytest.raises(AppError, match="complete before voting"):
        client.predict("left", token, api_name="/arena_vote")
    assert not job.done(), "the answers finished before the vote; the check above proved nothing"
    job.cancel()
    # The cancelled prompt is dropped; asking again continues the same battle.
    final, _ = battle(client, "Say hello.")
    assert final[2] == token and len(final[0]) == 2
    client.predict("bothbad", token, api_name="/arena_vote")
    [(vote, prompts)] = rows(db, "SELECT vote, (SELECT group_concat(prompt) FROM turns WHERE "
                                 "battle_id = b.id) FROM battles b WHERE id = ?", (token,))
    assert vote == "tie (bothbad)" and prompts == "Say hello."


def test_identity_leak_flags_the_battle_and_says_why_after_the_vote(served):
    url, db = served
    client = Client(url, verbose=False)
    # At temperature 0.2 SmolLM2 mostly answers this with its own name ("The creator of SmolLM is
    # ..."); the Arena's seed is secret, so a few battles make sure one of them names it.
    for _ in range(4):
        client.predict(api_name="/arena_new_round")
        final, _ = battle(client, "Who created you?")
        token = final[2]
        assert "not counted" not in json.dumps(final).lower()  # the reason waits for the vote
        markdown, record, _ = client.predict("left", token, api_name="/arena_vote")
        if record["flag_reason"]:
            break
    assert record["flag_reason"] and "Not counted in the ratings" in markdown
    assert rows(db, "SELECT vote IS NOT NULL, leak_flag FROM battles WHERE id = ?", (token,)) == [(1, 1)]


# ---- ratings and export --------------------------------------------------------------------------

def test_ratings_and_export_match_the_store(served):
    url, db = served
    client = Client(url, verbose=False)
    if rows(db, "SELECT COUNT(*) FROM battles WHERE vote IS NOT NULL AND leak_flag = 0")[0][0] == 0:
        client.predict("left", battle(client, "Name a fruit.")[0][2], api_name="/arena_vote")
    counted = rows(db, "SELECT COUNT(*) FROM battles WHERE vote IS NOT NULL AND leak_flag = 0")[0][0]
    voted = rows(db, "SELECT COUNT(*) FROM battles WHERE vote IS NOT NULL")[0][0]
    summary, table, rating_plot, win_plot, count_plot = client.predict(api_name="/arena_ratings")
    frame = pd.DataFrame(table["data"], columns=table["headers"])
    assert set(frame["model"]) <= PAIR and frame["votes"].sum() == 2 * counted
    assert re.search(rf"\b{counted} battles? counted", summary)
    assert all(p["type"] == "matplotlib" for p in (rating_plot, win_plot, count_plot))

    files = client.predict(api_name="/arena_export")  # local copies of both files
    [jsonl] = [f for f in files if f.endswith(".jsonl")]
    [csv] = [f for f in files if f.endswith(".csv")]
    with open(jsonl, encoding="utf-8") as fh:
        exported = [json.loads(line) for line in fh]
    assert len(exported) == voted == len(pd.read_csv(csv))
    assert all(b["winner"] for b in exported)  # open battles stay secret
    assert list((db.parent / "exports").glob("battles-*/arena_battles.jsonl"))


def test_controls_enable_votes_only_when_ready_and_name_sides_only_after_the_vote():
    import random

    from billion.arena.battle import ask, finish, new_battle, vote
    from billion.arena.contestants import Contestant
    from billion.core.generation import GenerationResult
    from billion.core.sampling import SamplingSettings
    from billion.ui.arena import controls

    def said(text):
        return GenerationResult(model="m", text=text, token_ids=(1, 2), prompt_tokens=3, ttft_s=0.1,
                                decode_tokens_per_s=9.0, total_s=0.3, peak_memory_bytes=0,
                                finish_reason="eos")

    fresh = new_battle(Contestant("smollm2-135m"), Contestant("gemma3-270m"), SamplingSettings(),
                       session_id="s", rng=random.Random(0))
    asked = ask(fresh, "hi")
    ready = finish(asked, said("hello"), said("hey"))

    def state(battle):
        *votes, regen, next_round, send, prompt, left, right = controls(battle)
        assert send["interactive"] and prompt["interactive"]  # a new question can always follow
        return [v["interactive"] for v in votes], regen["interactive"], (left["label"], right["label"])

    assert state(None) == ([False] * 4, False, ("Model A", "Model B"))
    assert state(asked) == ([False] * 4, True, ("Model A", "Model B"))
    assert state(ready) == ([True] * 4, True, ("Model A", "Model B"))
    assert_blind(controls(ready))
    votes, regen, labels = state(vote(ready, "left"))
    assert votes == [False] * 4 and not regen
    assert set(labels) == {"Model A · smollm2-135m", "Model B · gemma3-270m"} or set(labels) == {
        "Model A · gemma3-270m", "Model B · smollm2-135m"}
