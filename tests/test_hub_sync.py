"""Copies of the votes (a Hub dataset, or a folder standing in for one) and restoring a new store."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

from billion.arena.hub_sync import (FolderCopy, HubSync, durability_note, is_folder_target, read_records,
                                    restore_votes, start_vote_copy)
from billion.store.store import Store


def voted(store: Store, n: int) -> list[str]:
    ids = []
    for i in range(n):
        battle_id = store.create_battle(model_a={"name": "x"}, model_b={"name": "y"}, position="left",
                                        sampling={}, seed=i, session_id="s")
        store.add_turn(battle_id, 0, f"q{i}", "a", "b")
        store.record_vote(battle_id, "model_a")
        ids.append(battle_id)
    return ids


def test_a_folder_stands_in_for_the_dataset_and_restores_a_new_store(tmp_path):
    target = tmp_path / "dataset"
    copy = start_vote_copy(str(target), tmp_path / "sync")
    assert isinstance(copy, FolderCopy) and copy.every_minutes == 0
    store = Store(tmp_path / "a.sqlite3", on_vote=copy.append)
    ids = voted(store, 3)
    assert sorted(r["id"] for r in copy.records()) == sorted(ids)
    fresh = Store(tmp_path / "b.sqlite3")
    assert restore_votes(fresh, copy) == 3 and restore_votes(fresh, copy) == 0
    assert fresh.battle_ids() == set(ids)
    # A second app on the same folder writes its own file; both are read back.
    other = FolderCopy(target)
    assert other.file != copy.file
    store.close()
    fresh.close()


def test_torn_lines_are_skipped(tmp_path):
    folder = tmp_path / "battles"
    folder.mkdir()
    (folder / "x.jsonl").write_text(json.dumps({"id": "a", "winner": "tie"}) + "\n{\"id\": \"b\", \"win\n")
    assert [r["id"] for r in read_records(list(folder.glob("*.jsonl")))] == ["a"]


def test_targets_and_what_the_page_says(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert is_folder_target("/srv/votes") and is_folder_target("file:///srv/votes")
    assert not is_folder_target("me/votes")
    assert start_vote_copy(None, tmp_path) is None
    assert start_vote_copy("me/votes", tmp_path) is None  # a dataset without a token: off
    hub = HubSync(SimpleNamespace(lock=threading.Lock()), tmp_path / "f.jsonl", "me/votes", 5.0)
    path = tmp_path / "billion.sqlite3"

    def note(**kw):
        return durability_note(**{"on_space": True, "store_path": path, "persistent": False, "copy": None,
                                  "backup": None, "backup_minutes": 5, **kw})

    assert note() == "Votes are kept on this Space's disk only: lost at restart."
    assert "copied to the dataset me/votes every 5 minutes" in note(copy=hub) and "restored" in note(copy=hub)
    assert "copied to /data/billion every 5 minutes" in note(backup=Path("/data/billion"))
    assert note(persistent=True).startswith("Votes are kept on persistent storage")
    assert "this machine's disk" in note(on_space=False)
