"""The per-browser state a reload brings back: keyed by token, capped, expiring, files included."""

from __future__ import annotations

import secrets
import sqlite3

import pytest

from billion.core.errors import BillionError
from billion.store.session_state import SessionLimits, SessionStates, token_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def token() -> str:
    return secrets.token_hex(16)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def states(tmp_path, clock):
    store = SessionStates(tmp_path / "sessions.sqlite3", tmp_path / "files",
                          SessionLimits(value_bytes=2000, rows=5, max_age_s=100, file_bytes=1000), clock)
    yield store
    store.close()


def test_a_value_comes_back_for_its_token_only(states):
    mine, theirs = token(), token()
    history = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Ahoy"}]
    assert states.save(mine, "chat", {"a": history})
    assert states.load(mine, "chat") == {"a": history}
    assert states.load(theirs, "chat") is None
    assert states.load(mine, "arena") is None
    states.save(theirs, "chat", {"a": []})
    assert states.load(mine, "chat") == {"a": history}  # one browser never overwrites another's


def test_the_token_itself_is_not_stored(states):
    mine = token()
    states.save(mine, "chat", 1)
    keys = sqlite3.connect(states.path).execute("SELECT key FROM session_state").fetchall()
    assert keys == [(token_key(mine),)] and mine not in keys[0][0]


@pytest.mark.parametrize("bad", ["", "abc", "../" * 11, "G" * 32, None])
def test_a_malformed_token_is_refused(states, bad):
    with pytest.raises(BillionError, match="reload"):
        states.save(bad, "chat", 1)
    with pytest.raises(BillionError):
        states.load(bad, "chat")


def test_a_value_over_the_size_limit_is_not_kept(states):
    mine = token()
    states.save(mine, "chat", "small")
    assert not states.save(mine, "chat", "x" * 3000)
    assert states.load(mine, "chat") == "small"


def test_values_expire(states, clock):
    mine = token()
    states.save(mine, "chat", 1)
    clock.now += 101
    assert states.load(mine, "chat") is None
    states.save(token(), "chat", 2)  # the next write sweeps the expired row away
    assert states.count() == 1


def test_the_oldest_rows_go_past_the_cap(states, clock):
    tokens = [token() for _ in range(7)]
    for i, t in enumerate(tokens):
        clock.now += 1
        states.save(t, "chat", i)
    assert states.count() == 5
    assert states.load(tokens[0], "chat") is None and states.load(tokens[1], "chat") is None
    assert states.load(tokens[-1], "chat") == 6


def test_a_kept_file_comes_back_and_is_replaced(states, tmp_path):
    mine = token()
    first = tmp_path / "data.jsonl"
    first.write_text('{"prompt": "a", "completion": "b"}\n')
    kept = states.keep_file(mine, "trainer-file", first)
    assert kept != first and kept.read_text() == first.read_text() and kept.name == "data.jsonl"
    assert states.kept_file(mine, "trainer-file") == kept
    assert states.kept_file(token(), "trainer-file") is None
    assert states.keep_file(mine, "trainer-file", kept) == kept  # kept again from its own copy
    second = tmp_path / "other.csv"
    second.write_text("prompt,completion\na,b\n")
    again = states.keep_file(mine, "trainer-file", second)
    assert again.name == "other.csv" and not kept.exists()
    states.forget_file(mine, "trainer-file")
    assert states.kept_file(mine, "trainer-file") is None and not again.exists()


def test_a_file_over_the_limit_is_refused(states, tmp_path):
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * 1001)
    with pytest.raises(BillionError, match="up to"):
        states.keep_file(token(), "trainer-file", big)


def test_files_go_with_their_expired_rows(states, tmp_path, clock):
    mine = token()
    source = tmp_path / "d.jsonl"
    source.write_text("{}\n")
    kept = states.keep_file(mine, "trainer-file", source)
    clock.now += 101
    states.save(token(), "chat", 1)
    assert not kept.exists()


def test_state_survives_a_new_store_on_the_same_file(tmp_path):
    mine = token()
    first = SessionStates(tmp_path / "s.sqlite3", tmp_path / "files")
    first.save(mine, "arena", {"battle": "x"})
    first.close()
    second = SessionStates(tmp_path / "s.sqlite3", tmp_path / "files")
    assert second.load(mine, "arena") == {"battle": "x"}
    second.close()
