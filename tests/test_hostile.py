"""Issue 13's probes of a public Space, replayed against the launched app; each asserts what holds now.

An outside probe (gradio_client and raw HTTP on a loopback port) found these; the training-run
findings (1, 5, 7's max_steps, 9) are tested with the trainer's own work. Here:

- 2: a tiny Parquet file that decodes to a gigabyte; 7: a 16 MB system message, a huge history;
  8: a 300 MB upload (memory probes: the real `python app.py`, its peak RSS read from /proc);
- 3: a battle error that named a model by its context size; 4: the oracle attack (Chat replaying an
  anonymous answer); 11: NaN, infinite and huge numbers; 12: votes exported by anyone;
  13: votes lost with the Space's disk;
- what held (file-route traversal, forged and replayed votes, names absent from SSE, /config and
  /gradio_api/info) is tested in test_paths_security.py and test_app_arena.py.

Fast probes run against one app served from this process on the offline SmolLM2; the memory
probes start the real app and are marked slow.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from app_server import serve_app
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_app_arena import text_of

from billion.arena.battle import ANSWER_FAILED
from billion.context import build_context
from billion.core.limits import DEFAULT_LIMITS
from billion.core.registry import MODELS
from billion.core.settings import Settings
from billion.ui.arena_ratings import current_ratings, ratings_frame

pytestmark = [
    pytest.mark.skipif(
        not any(m.alias == "smollm2-135m" for m in MODELS), reason="needs the offline SmolLM2 entry"),
    pytest.mark.usefixtures("one_thread"),  # tiny work on a shared 2-core CPU (conftest.py)
]

SECRETS = sorted({s.lower() for m in MODELS
                  for s in (m.alias, m.display_name, m.hub_id, m.family, m.size_label) if s})
TOKENS = 12
NAN, INF = float("nan"), float("inf")


def chat_args(prompt="Hi", system="", temperature=0.0, top_p=0.95, top_k=0, penalty=1.0, tokens=4,
              seed=0, history=None, dtype="fp32") -> tuple:
    return (prompt, history or [], [], False, "smollm2-135m", "smollm2-135m", system, temperature, top_p,
            top_k, penalty, tokens, seed, dtype, "main")


def battle_args(prompt, pool="temperature", temperature=0.7, top_p=0.95, tokens=TOKENS, seed=-1) -> tuple:
    # fp32 on both sides: the one SmolLM2 load that Chat's calls here share (no int8 quantizing)
    return (prompt, pool, temperature, top_p, tokens, seed, False, "fp32")


def battles(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT COUNT(*) FROM battles").fetchone()[0]
    finally:
        con.close()


def raw_call(url: str, api: str, data: list) -> str:
    """One call through the raw HTTP API, with the JSON written by hand (NaN and Infinity included,
    as Python's json module writes them)."""
    body = json.dumps({"data": data})
    started = httpx.post(url + f"gradio_api/call/{api}", content=body,
                         headers={"content-type": "application/json"}, timeout=30)
    if started.status_code != 200:
        return f"refused {started.status_code}: {started.text}"
    return httpx.get(url + f"gradio_api/call/{api}/{started.json()['event_id']}", timeout=120).text


@pytest.fixture(scope="module")
def served(tmp_path_factory, models):
    """(url, store path): the app as on a Space that keeps its votes private."""
    data = tmp_path_factory.mktemp("hostile")
    ctx = build_context(Settings.in_folder(data, votes_public=False), models)
    with serve_app(ctx=ctx) as url:
        yield url, ctx.store.path
    ctx.close()


# ---- finding 3: errors during a battle never name or size a model ---------------------------------

def test_an_answer_that_fails_ends_the_battle_unrecorded_and_says_nothing_of_either(served):
    url, db = served
    client = Client(url, verbose=False)
    before = battles(db)
    emoji = "🦜" * 2900  # ~2,900 characters, over 8,192 tokens: past SmolLM2's context
    assert len(emoji) < DEFAULT_LIMITS.arena_prompt_chars
    with pytest.raises(AppError) as caught:
        client.predict(*battle_args(emoji, pool="temperature"), api_name="/arena_battle")
    message = str(caught.value)
    assert "one of the answers" in message.lower() and "ended unrecorded" in message
    assert not any(s in message.lower() for s in [*SECRETS, "8192", "context", "model a", "model b"])
    assert battles(db) == before  # nothing stored, so nothing to vote on
    with pytest.raises(AppError, match="ended unrecorded .* takes no vote"):
        client.predict("left", "", api_name="/arena_vote")
    # The session goes on with a new battle (a new pair, a new token).
    final = client.predict(*battle_args("Say hello.", pool="temperature"), api_name="/arena_battle")
    assert len(final[2]) == 32 and battles(db) == before + 1


# ---- finding 4: the oracle attack -------------------------------------------------------------------

def test_the_arena_takes_no_greedy_decoding_and_no_known_seed(served):
    """Before: a battle at temperature 0 (or with a known seed) was reproduced token for token by
    /chat with each model, naming both sides before the vote. Now the Arena refuses both."""
    url, db = served
    client = Client(url, verbose=False)
    before = battles(db)
    with pytest.raises(AppError, match=r"temperature (must be between 0\.5|0\.5 or more)"):
        client.predict(*battle_args("Name a colour.", temperature=0.0), api_name="/arena_battle")
    with pytest.raises(AppError, match="secret seed"):
        client.predict(*battle_args("Name a colour.", seed=11), api_name="/arena_battle")
    assert battles(db) == before


@pytest.mark.slow
def test_chat_cannot_replay_an_anonymous_answer(served):
    """The attack itself: a battle at temperature 1.0 (the Arena's secret seed), then the attacker's
    replays in Chat, greedy and with guessed seeds, in each precision: none equals either answer."""
    url, _ = served
    client = Client(url, verbose=False)
    prompt = "Tell me a short story about a robot who learns to paint."
    # The precision pool: both sides sample at the battle's temperature (the temperature pool's
    # 0.2 side is near-greedy on purpose; docs/arena.md).
    left, right, token, *_ = client.predict(*battle_args(prompt, "dtype", temperature=1.0, tokens=24),
                                            api_name="/arena_battle")
    answers = {text_of(left[-1]), text_of(right[-1])}
    assert all(answers)
    replays = set()
    for dtype in ("fp32", "bf16"):
        chat = Client(url, verbose=False)
        replays.add(text_of(chat.predict(*chat_args(prompt, tokens=24, dtype=dtype), api_name="/chat")[0][-1]))
        for seed in range(3):
            replays.add(text_of(chat.predict(*chat_args(prompt, temperature=1.0, tokens=24, seed=seed,
                                                         dtype=dtype), api_name="/chat")[0][-1]))
    assert not answers & replays, "Chat reproduced an anonymous answer"
    client.predict("tie", token, api_name="/arena_vote")


# ---- finding 11: numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("field, index, value", [
    ("repetition_penalty", 10, NAN), ("temperature", 7, NAN), ("top_k", 9, NAN), ("seed", 12, 2**70),
    ("top_p", 8, INF), ("max_new_tokens", 11, 10**9), ("temperature", 7, 1e308),
])
def test_bad_numbers_are_refused_naming_the_field(served, field, index, value):
    url, _ = served
    data = list(chat_args())
    data[index] = value
    reply = raw_call(url, "chat", data)
    assert "event: error" in reply or reply.startswith("refused"), reply[:300]
    if "event: error" in reply:
        assert field.replace("_", " ") in reply.replace("_", " ").lower(), reply[:300]


def test_the_arena_stores_no_battle_from_bad_numbers(served):
    url, db = served
    before = battles(db)
    for index, value in ((2, NAN), (3, NAN), (4, INF), (4, 10**9), (5, 2**70)):
        data = list(battle_args("Name a fruit."))
        data[index] = value
        reply = raw_call(url, "arena_battle", data)
        assert "event: error" in reply or reply.startswith("refused"), reply[:300]
    assert battles(db) == before


# ---- finding 7: sizes counted in characters before tokenising ---------------------------------------

def test_a_huge_system_message_or_history_is_refused_before_tokenising(served):
    url, _ = served
    client = Client(url, verbose=False)
    started = time.perf_counter()
    with pytest.raises(AppError, match="system message has 16777216 characters"):
        client.predict(*chat_args(system="x" * 2**24), api_name="/chat")
    history = [{"role": role, "content": [{"type": "text", "text": ch * 1000}]}
               for role, ch in (("user", "y"), ("assistant", "z"))] * 40  # Gradio 6's message shape
    with pytest.raises(AppError, match="conversation so far is over"):
        client.predict(*chat_args(history=history), api_name="/chat")
    assert time.perf_counter() - started < 30  # 14.7 s for the system message alone before


# ---- finding 12: export --------------------------------------------------------------------------

def test_votes_are_not_exported_when_the_owner_keeps_them_private(served):
    url, _ = served
    with pytest.raises(AppError, match="Exporting votes is off"):
        Client(url, verbose=False).predict(api_name="/arena_export")


# ---- finding 13: votes outlive the Space's disk ---------------------------------------------------

def test_votes_come_back_from_the_dataset_copy_after_the_disk_is_wiped(tmp_path, models):
    """Vote, wipe the data folder (a Space restart), start again: the ratings are the same."""
    copy = tmp_path / "dataset"  # stands in for the Hub dataset repo
    data = tmp_path / "data"
    ctx = build_context(Settings.in_folder(data, hub_dataset=str(copy)), models)
    with serve_app(ctx=ctx) as url:
        client = Client(url, verbose=False)
        for choice in ("left", "right", "left"):
            token = client.predict(*battle_args("Name a fruit.", tokens=4),
                                   api_name="/arena_battle")[2]
            client.predict(choice, token, api_name="/arena_vote")
        before = ratings_frame(current_ratings(ctx.store))
        page = httpx.get(url + "config", timeout=30).text
    ctx.close()
    assert f"copied to the folder {copy}" in page
    shutil.rmtree(data)
    again = build_context(Settings.in_folder(data, hub_dataset=str(copy)), models)
    try:
        assert again.restored_votes == 3
        after = ratings_frame(current_ratings(again.store))
        assert after.drop(columns=["Elo"]).equals(before.drop(columns=["Elo"])) and len(after) == 2
        assert after["Elo"].equals(before["Elo"])
    finally:
        again.close()
    twice = build_context(Settings.in_folder(data, hub_dataset=str(copy)), models)
    assert twice.restored_votes == 0 and len(twice.store.battle_ids()) == 3  # restoring again adds nothing
    assert twice.store.import_battles(twice.hub_sync.records()) == 0
    twice.close()


# ---- memory: findings 2, 7 and 8 against the real `python app.py` -----------------------------------

def peak_rss(app) -> int:
    return app.memory().peak_bytes


@pytest.mark.slow
def test_memory_probes_keep_the_app_under_3_gb(tmp_path):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from app_process import start_app

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    app = start_app(tmp_path / "data", env={"GRADIO_TEMP_DIR": str(uploads)})
    try:
        client = Client(app.url, verbose=False)
        client.predict(*chat_args(tokens=2), api_name="/chat")  # the 135M model, loaded
        loaded = app.memory().rss_bytes
        # 2: a ~90 KB Parquet file of one string a million times (916 MB once decoded before).
        bomb = tmp_path / "bomb.parquet"
        column = pa.DictionaryArray.from_arrays(pa.array(np.zeros(1_000_000, dtype=np.int32)),
                                                pa.array(["All work and no play. " * 40]))
        pq.write_table(pa.table({"text": column}), bomb, compression="zstd")
        for _ in range(2):  # a second session added 550 MB more before
            report = Client(app.url, verbose=False).predict(handle_file(str(bomb)), api_name="/trainer_inspect")
            assert "more than 100,000 rows" in report[0]
        # 7: a 16 MB system message is refused before it is tokenised.
        with pytest.raises(AppError, match="system message has"):
            client.predict(*chat_args(system="x" * 2**24), api_name="/chat")
        # 8: a 300 MB upload is refused while it streams in, and nothing of it stays.
        def body():
            chunk = b"0" * 2**20
            for _ in range(300):
                yield chunk
        boundary = "billionboundary"
        head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.jsonl\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()

        def multipart():
            yield head
            yield from body()
            yield f"\r\n--{boundary}--\r\n".encode()
        try:
            reply = httpx.post(app.url + "gradio_api/upload", content=multipart(), timeout=120,
                               headers={"content-type": f"multipart/form-data; boundary={boundary}"})
            assert reply.status_code == 413, reply.text[:200]
        except httpx.HTTPError:
            pass  # the server may close the connection before the body is sent
        time.sleep(0.5)
        left = [p for p in uploads.rglob("*") if p.is_file()]
        assert not [p for p in left if p.stat().st_size > 2**20], left
        assert not list(uploads.rglob("bomb.parquet")), "a refused upload stayed in the upload folder"
        peak = peak_rss(app)
        assert peak < 3 * 2**30, f"peak RSS {peak / 2**30:.2f} GB (after loading: {loaded / 2**30:.2f} GB)"
        assert client.predict(*chat_args(tokens=2), api_name="/chat")[0]  # still answering
    finally:
        app.stop()
