"""The store's file copied to a storage bucket's folder, and put back when the local disk is new."""

from __future__ import annotations

from billion.context import build_context
from billion.core.settings import Settings
from billion.store.backup import StoreBackup, restore_file
from billion.store.store import Store


def vote(store: Store) -> str:
    battle_id = store.create_battle(model_a={"name": "x"}, model_b={"name": "y"}, position="left",
                                    sampling={}, seed=1, session_id="s")
    store.add_turn(battle_id, 0, "q", "a", "b")
    store.record_vote(battle_id, "tie")
    return battle_id


def test_the_copy_follows_changes_only(tmp_path):
    store = Store(tmp_path / "local" / "billion.sqlite3")
    backup = StoreBackup(store, tmp_path / "bucket", every_minutes=60)
    first = vote(store)
    assert backup.backup_now() and not backup.backup_now()  # nothing new: no copy
    copied = Store(backup.target)
    assert copied.battle_ids() == {first}
    copied.close()
    vote(store)
    backup.close()  # a last copy at close
    copied = Store(backup.target)
    assert len(copied.battle_ids()) == 2
    copied.close()
    store.close()
    assert not list((tmp_path / "bucket").glob("*.partial"))


def test_a_restart_on_a_wiped_disk_restores_the_copy(tmp_path):
    settings = Settings.in_folder(tmp_path / "local", backup_dir=tmp_path / "bucket")
    ctx = build_context(settings)
    ids = {vote(ctx.store) for _ in range(3)}
    ctx.close()  # the last copy
    for file in (tmp_path / "local").glob("billion.sqlite3*"):
        file.unlink()  # the Space's own disk, wiped
    again = build_context(settings)
    assert again.store.battle_ids() == ids
    assert "copied to" in again.durability and str(tmp_path / "bucket") in again.durability
    again.close()
    assert not restore_file(settings.db_path, tmp_path / "bucket")  # a local store is never replaced
