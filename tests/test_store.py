"""The SQLite store: real files, real threads, a real SIGKILL."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from billion.arena.hub_sync import HubSync, start_hub_sync
from billion.arena.ratings import compute_ratings
from billion.context import build_context
from billion.core.errors import BillionError
from billion.core.paths import REPO_ROOT
from billion.core.settings import Settings
from billion.store.store import SCHEMA_VERSION, Store


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLION_DB", str(tmp_path / "votes.sqlite3"))
    s = Store(Settings.from_env().db_path)  # the app's settings read BILLION_DB
    yield s
    s.close()


def contestant(name: str, dtype: str = "auto") -> dict:
    return {"name": name, "alias": name, "revision": None, "dtype": dtype, "settings": None,
            "adapter": None}


def answered_battle(store: Store, a: str = "x", b: str = "y", position: str = "left", turns: int = 1) -> str:
    battle_id = store.create_battle(model_a=contestant(a), model_b=contestant(b), position=position,
                                    sampling={"temperature": 0.7}, seed=7, session_id="s1")
    for idx in range(turns):
        store.add_turn(battle_id, idx, f"prompt {idx}", f"answer a {idx}", f"answer b {idx}",
                       stats={"a": {"tokens_per_s": 10.0}})
    return battle_id


def test_store_uses_env_path_wal_and_full_sync(store, tmp_path):
    assert store.path == tmp_path / "votes.sqlite3" and store.path.is_file()
    con = store._con
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version == SCHEMA_VERSION


def test_battle_round_trip(store):
    battle_id = answered_battle(store, turns=2)
    store.record_vote(battle_id, "model_b")
    record = store.battle_record(battle_id)
    assert record["winner"] == "model_b" and record["voted_at"] is not None
    assert record["contestant_a"]["name"] == "x" and record["position"] == "left"
    assert [t["prompt"] for t in record["turns"]] == ["prompt 0", "prompt 1"]
    assert record["turns"][1]["answer_b"] == "answer b 1"
    assert record["turns"][0]["stats"] == {"a": {"tokens_per_s": 10.0}}
    frame = store.battles_frame()
    assert frame.loc[0, ["model_a", "model_b", "winner", "flagged", "n_turns"]].tolist() == \
        ["x", "y", "model_b", False, 2]


def test_concurrent_votes_from_20_threads(store):
    # Each thread runs whole battles (create, answer, vote), as 20 Gradio sessions would.
    battle_ids: list[str] = []
    errors: list[Exception] = []

    def run_battles(worker: int) -> None:
        try:
            for n in range(50):
                battle_id = answered_battle(store, f"m{worker % 4}", f"m{(worker + 1) % 4}")
                store.record_vote(battle_id, ("model_a", "model_b", "tie")[(worker + n) % 3])
                battle_ids.append(battle_id)
        except Exception as exc:  # surfaced below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=run_battles, args=(w,)) for w in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.battles_frame(voted_only=True)) == 1000
    store.close()
    reopened = Store(store.path)
    frame = reopened.battles_frame(voted_only=True)
    assert len(frame) == 1000 and set(frame["id"]) == set(battle_ids) and len(set(battle_ids)) == 1000
    assert compute_ratings(frame, bootstrap_rounds=10).n_battles == 1000
    reopened.close()


def test_racing_votes_on_the_same_battles_count_once(store):
    # Two of the four racers vote through a second connection, as a second process would.
    other = Store(store.path)
    battle_ids = [answered_battle(store) for _ in range(50)]
    wins: list[str] = []
    refusals: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def vote_all(through: Store) -> None:
        barrier.wait()
        for battle_id in battle_ids:
            try:
                through.record_vote(battle_id, "model_a")
                with lock:
                    wins.append(battle_id)
            except BillionError as exc:
                with lock:
                    refusals.append(str(exc))

    threads = [threading.Thread(target=vote_all, args=(s,)) for s in (store, other, store, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert sorted(wins) == sorted(battle_ids)
    assert len(refusals) == 150 and all("already has its vote" in r for r in refusals)


def test_vote_survives_sigkill(tmp_path):
    db = tmp_path / "killed.sqlite3"
    script = (
        "import sys, time\n"
        "from billion.store.store import Store\n"
        "s = Store(sys.argv[1])\n"
        "b = s.create_battle(model_a={'name': 'x'}, model_b={'name': 'y'}, position='right',\n"
        "                    sampling={}, seed=1, session_id='kill')\n"
        "s.add_turn(b, 0, 'hi', 'a', 'b')\n"
        "s.record_vote(b, 'tie')\n"
        "print('OK', b, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(db)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        line = proc.stdout.readline().split()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert line[0] == "OK"
    reopened = Store(db)
    record = reopened.battle_record(line[1])
    assert record["winner"] == "tie" and record["position"] == "right"
    reopened.close()


def test_bad_votes_are_refused_and_nothing_recorded_twice(store):
    battle_id = answered_battle(store)
    with pytest.raises(BillionError, match="No battle with id"):
        store.record_vote("no-such-battle", "model_a")
    with pytest.raises(BillionError, match="must be one of"):
        store.record_vote(battle_id, "left")
    first = store.record_vote(battle_id, "model_a")
    with pytest.raises(BillionError, match="already has its vote"):
        store.record_vote(battle_id, "model_b")
    record = store.battle_record(battle_id)
    assert (record["winner"], record["voted_at"]) == ("model_a", first)
    with pytest.raises(BillionError, match="already has its vote"):
        store.add_turn(battle_id, 1, "more?", "a", "b")
    assert len(store.battles_frame()) == 1 and len(store.battle_record(battle_id)["turns"]) == 1


def test_vote_before_answers_finish_is_refused(store):
    battle_id = store.create_battle(model_a=contestant("x"), model_b=contestant("y"), position="left",
                                    sampling={}, seed=None, session_id="s")
    with pytest.raises(BillionError, match="complete before voting"):
        store.record_vote(battle_id, "model_a")
    store.begin_turn(battle_id, 0, "first")
    with pytest.raises(BillionError, match="complete before voting"):
        store.record_vote(battle_id, "model_a")
    store.finish_turn(battle_id, 0, "a", "b")
    store.begin_turn(battle_id, 1, "second, still answering")
    with pytest.raises(BillionError, match="complete before voting"):
        store.record_vote(battle_id, "model_a")
    assert store.battle_record(battle_id)["winner"] is None
    store.finish_turn(battle_id, 1, "a2", "b2")
    store.record_vote(battle_id, "model_a")


def test_asking_a_turn_again_replaces_it(store):
    battle_id = answered_battle(store, turns=2)
    store.begin_turn(battle_id, 1, "prompt 1")
    store.finish_turn(battle_id, 1, "new a", "new b")
    turns = store.battle_record(battle_id)["turns"]
    assert [(t["idx"], t["answer_a"]) for t in turns] == [(0, "answer a 0"), (1, "new a")]
    with pytest.raises(BillionError, match="must follow"):
        store.begin_turn(battle_id, 5, "skips turns")


def test_flag_keeps_vote_but_marks_it(store):
    battle_id = answered_battle(store)
    store.flag_battle(battle_id, "names SmolLM")
    store.record_vote(battle_id, "model_a")
    frame = store.battles_frame()
    assert bool(frame.loc[0, "flagged"]) and frame.loc[0, "winner"] == "model_a"
    assert compute_ratings(frame).n_flagged == 1


def test_export_jsonl_and_csv_round_trip(store, tmp_path):
    voted = answered_battle(store, "x", "y", turns=2)
    store.record_vote(voted, "tie (bothbad)")
    open_one = answered_battle(store, "y", "z", position="right")
    assert store.export_jsonl(tmp_path / "b.jsonl") == 2
    lines = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert lines == [store.battle_record(voted), store.battle_record(open_one)]
    assert store.export_csv(tmp_path / "b.csv") == 2
    with (tmp_path / "b.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == [voted, open_one]
    assert rows[0]["winner"] == "tie (bothbad)" and rows[1]["winner"] == ""
    assert json.loads(rows[0]["turns"]) == store.battle_record(voted)["turns"]
    assert json.loads(rows[1]["contestant_b"]) == contestant("z")
    # Open battles stay blind: the app's export leaves them out.
    assert store.export_jsonl(tmp_path / "v.jsonl", voted_only=True) == 1
    assert store.export_csv(tmp_path / "v.csv", voted_only=True) == 1
    assert json.loads((tmp_path / "v.jsonl").read_text())["id"] == voted


def test_vote_fingerprint_changes_with_votes_and_flags(store):
    before = store.vote_fingerprint()
    battle_id = answered_battle(store)
    assert store.vote_fingerprint() == before  # an open battle changes no rating
    store.record_vote(battle_id, "model_a")
    voted = store.vote_fingerprint()
    store.flag_battle(battle_id, "named itself")
    assert len({before, voted, store.vote_fingerprint()}) == 3


def test_reopen_keeps_schema_and_refuses_newer(tmp_path):
    path = tmp_path / "s.sqlite3"
    Store(path).close()
    again = Store(path)
    assert again.schema_version == SCHEMA_VERSION
    again.close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_version VALUES (?, 'future')", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(BillionError, match="newer than this billion"):
        Store(path)


def test_bench_results_are_insert_only_history(store):
    first = store.add_bench_result(model="x", task="hellaswag", metric="acc_norm", score=0.41,
                                   stderr=0.01, n=100, settings={"shots": 0}, extra={"k": 1})
    second = store.add_bench_result(model="x", task="hellaswag", metric="acc_norm", score=0.43)
    store.add_bench_result(model="y", task="arc", metric="acc", score=0.3)
    frame = store.bench_results_frame(model="x")
    assert frame["id"].tolist() == [first, second] and frame["score"].tolist() == [0.41, 0.43]
    assert frame.loc[0, "settings"] == {"shots": 0} and "python" in frame.loc[0, "library_versions"]
    assert len(store.bench_results_frame()) == 3 and len(store.bench_results_frame(task="arc")) == 1


def test_training_runs_upsert(store):
    with pytest.raises(BillionError, match="needs base_model and config"):
        store.upsert_training_run("r1", status="running")
    store.upsert_training_run("r1", base_model="smollm2-135m", config={"lr": 1e-4}, data_hash="abc")
    store.upsert_training_run("r1", status="done", results={"loss": 1.5}, output_dir="/tmp/r1")
    row = store.training_runs_frame().iloc[0]
    assert (row["base_model"], row["status"], row["data_hash"]) == ("smollm2-135m", "done", "abc")
    assert row["config"] == {"lr": 1e-4} and row["results"] == {"loss": 1.5}
    assert row["updated_at"] >= row["created_at"]


def test_hub_sync_off_without_token_and_repo(tmp_path, monkeypatch):
    for name in ("HF_TOKEN", "BILLION_HUB_DATASET"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "data" / "hub_sync"
    assert start_hub_sync(None, folder) is None
    assert start_hub_sync("me/votes", folder) is None
    monkeypatch.setenv("BILLION_HUB_DATASET", "me/votes")
    settings = Settings.in_folder(tmp_path / "data", hub_dataset=Settings.from_env().hub_dataset)
    assert settings.hub_dataset == "me/votes"
    ctx = build_context(settings)
    assert ctx.hub_sync is None and ctx.store.on_vote is None and not folder.exists()
    ctx.close()


def test_voted_battles_append_to_sync_folder(store, tmp_path):
    # CommitScheduler uploads whatever is in the folder; the store's part is the JSONL it appends.
    store.on_vote = HubSync(SimpleNamespace(lock=threading.Lock()), tmp_path / "sync.jsonl").append
    battle_id = answered_battle(store)
    answered_battle(store)  # never voted: never synced
    store.record_vote(battle_id, "model_b")
    lines = (tmp_path / "sync.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [battle_id]
    assert json.loads(lines[0])["winner"] == "model_b"


def test_path_in_missing_folder_is_created(tmp_path):
    s = Store(Path(tmp_path / "deep" / "er" / "s.sqlite3"))
    assert s.path.is_file()
    s.close()


def test_store_from_schema_v1_migrates_and_keeps_battles(tmp_path):
    from billion.store.schema import MIGRATIONS

    path = tmp_path / "v1.sqlite3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    for statement in MIGRATIONS[0]:
        con.execute(statement)
    con.execute("INSERT INTO schema_version VALUES (1, 'then')")
    con.commit()
    con.close()
    old = Store(path)
    assert old.schema_version == SCHEMA_VERSION >= 2
    battle_id = answered_battle(old)
    old.record_vote(battle_id, "tie")
    old.add_arena_contestant(contestant("x+lora:chef"))
    old.add_arena_contestant(contestant("x+lora:chef", dtype="bf16"))  # same name: replaced
    old.close()
    again = Store(path)
    assert again.battle_record(battle_id)["winner"] == "tie"
    assert [c["dtype"] for c in again.arena_contestants()] == ["bf16"]
    with pytest.raises(BillionError, match="needs a 'name'"):
        again.add_arena_contestant({"alias": "x"})
    again.close()


def test_a_failing_vote_hook_keeps_the_vote(store):
    def broken(record):
        raise OSError("disk full")

    store.on_vote = broken
    battle_id = answered_battle(store)
    with pytest.warns(UserWarning, match="disk full"):
        store.record_vote(battle_id, "tie")
    assert store.battle_record(battle_id)["winner"] == "tie"


def test_a_vote_on_a_full_disk_says_so_and_can_be_sent_again(store):
    """The disk refuses the write (for real: tests/disk_limits.py): a message that says nothing was
    saved and what to do, the battle still open, and the same vote stored once there is room."""
    from disk_limits import files_capped_at

    battle_id = answered_battle(store)
    with files_capped_at(1), pytest.raises(BillionError) as failure:
        store.record_vote(battle_id, "tie")
    message = str(failure.value)
    assert str(store.path) in message and "nothing of this request was saved" in message
    assert "Free disk space" in message and "send it again" in message
    assert store.battle_record(battle_id)["winner"] is None and battle_id not in store.battle_ids()
    store.record_vote(battle_id, "tie")
    assert store.battle_record(battle_id)["winner"] == "tie" and battle_id in store.battle_ids()


# ---- issue 13: battles that end unrecorded, restores by id, a private file ------------------------

def test_a_discarded_battle_leaves_nothing_and_a_voted_one_is_never_discarded(store):
    open_id = answered_battle(store)
    voted_id = answered_battle(store)
    store.record_vote(voted_id, "tie")
    assert store.discard_battle(open_id) and not store.discard_battle(voted_id)
    assert not store.discard_battle("no-such-battle")
    assert set(store.battles_frame()["id"]) == {voted_id}
    assert store._read("SELECT COUNT(*) FROM turns WHERE battle_id = ?", (open_id,))[0][0] == 0


def test_importing_voted_battles_is_idempotent_by_id(store, tmp_path):
    ids = [answered_battle(store, turns=2) for _ in range(3)]
    for battle_id, winner in zip(ids, ("model_a", "model_b", "tie")):
        store.record_vote(battle_id, winner)
    store.flag_battle(ids[2], "named itself")
    unvoted = answered_battle(store)
    records = [store.battle_record(i) for i in (*ids, unvoted)]
    fresh = Store(tmp_path / "fresh.sqlite3")
    assert fresh.import_battles(records) == 3  # the unvoted one is not a vote: left out
    assert fresh.import_battles(records) == 0
    assert [fresh.battle_record(i) for i in ids] == records[:3]
    ratings = [compute_ratings(s.battles_frame(voted_only=True), bootstrap_rounds=20) for s in (store, fresh)]
    assert ratings[0].ratings == ratings[1].ratings
    fresh.close()


def test_the_store_file_is_private_to_its_owner(store):
    answered_battle(store)
    for suffix in ("", "-wal"):
        assert oct(Path(f"{store.path}{suffix}").stat().st_mode & 0o777) == "0o600"


def test_backup_to_is_a_consistent_copy(store, tmp_path):
    store.record_vote(answered_battle(store), "tie")
    before = store.changes
    store.backup_to(tmp_path / "copy.sqlite3")
    copy = Store(tmp_path / "copy.sqlite3")
    assert copy.battle_ids() == store.battle_ids() and len(copy.battle_ids()) == 1
    copy.close()
    answered_battle(store)
    assert store.changes > before
