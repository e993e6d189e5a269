"""Settings read from the environment once, and the limits on input that live in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from billion.core.errors import BillionError
from billion.core.limits import DEFAULT_LIMITS, Limits, check_prompt
from billion.core.settings import Settings


def test_from_env_reads_each_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLION_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("BILLION_DB", raising=False)
    monkeypatch.setenv("BILLION_MODEL_BUDGET_GB", "1.5")
    monkeypatch.setenv("BILLION_HUB_DATASET", "me/votes")
    monkeypatch.setenv("BILLION_CONCURRENCY", "5")
    settings = Settings.from_env()
    assert settings.data_dir == tmp_path / "data"
    assert settings.db_path == tmp_path / "data" / "billion.sqlite3"
    assert settings.model_budget_bytes == int(1.5 * 2**30)
    assert (settings.hub_dataset, settings.concurrency) == ("me/votes", 5)
    monkeypatch.setenv("BILLION_DB", str(tmp_path / "elsewhere.sqlite3"))
    assert Settings.from_env().db_path == tmp_path / "elsewhere.sqlite3"
    # Changes win over the environment; a data folder given moves the default store with it.
    monkeypatch.delenv("BILLION_DB")
    moved = Settings.from_env(data_dir=tmp_path / "other", concurrency=1)
    assert moved.db_path == tmp_path / "other" / "billion.sqlite3" and moved.concurrency == 1


def test_in_folder_keeps_everything_in_one_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("BILLION_HUB_DATASET", "me/votes")
    settings = Settings.in_folder(tmp_path / "x")
    assert settings.data_dir.is_dir() and settings.db_path.parent == settings.data_dir
    assert settings.runs_dir.parent == settings.exports_dir.parent == settings.data_dir
    assert settings.hub_dataset is None


def test_limits_check_prompts():
    assert check_prompt("  hi \n", 2) == "hi"
    with pytest.raises(BillionError, match="empty: type a question"):
        check_prompt("   ", 10)
    with pytest.raises(BillionError, match="3 characters; chat takes at most 2: shorten it"):
        check_prompt("abc", 2, "chat")
    assert Limits(chat_prompt_chars=3).chat_prompt_chars == 3
    # The arena asks for less than chat, and the race takes whole passages.
    limits = DEFAULT_LIMITS
    assert limits.arena_prompt_chars < limits.chat_prompt_chars < limits.race_prompt_chars


# ---- issue 13: every limit a named setting; votes private on a Space; where /data lives -----------

def test_limits_come_from_the_environment_by_name(monkeypatch):
    monkeypatch.setenv("BILLION_LIMIT_MAX_NEW_TOKENS", "256")
    monkeypatch.setenv("BILLION_LIMIT_ARENA_MIN_TEMPERATURE", "0.8")
    limits = Settings.from_env().limits
    assert (limits.max_new_tokens, limits.arena_min_temperature) == (256, 0.8)
    monkeypatch.setenv("BILLION_LIMIT_UPLOAD_ROWS", "lots")
    with pytest.raises(BillionError, match="BILLION_LIMIT_UPLOAD_ROWS='lots' is not a number"):
        Settings.from_env()


def test_system_history_and_labels_are_counted_in_characters():
    from billion.core.limits import check_history, check_label, check_system

    small = Limits(system_chars=5, history_chars=10, history_messages=2, label_chars=6)
    assert check_system("be ok", small) == "be ok" and check_system(None, small) == ""
    with pytest.raises(BillionError, match="system message has 6 characters; it may have at most 5"):
        check_system("x" * 6, small)
    check_history([{"role": "user", "content": "x" * 10}], small)
    with pytest.raises(BillionError, match="over 10 characters"):
        check_history([{"role": "user", "content": "x" * 6}, {"role": "assistant", "content": "y" * 5}], small)
    with pytest.raises(BillionError, match="3 earlier messages"):
        check_history([{"role": "user", "content": ""}] * 3, small)
    with pytest.raises(BillionError, match="role and text"):
        check_history([{"role": "user", "content": ["parts"]}], small)
    assert check_label("  ab-1 ", small) == "ab-1" and check_label("", small) == ""
    with pytest.raises(BillionError, match="at most 6"):
        check_label("abcdefg", small)


def test_votes_are_private_by_default_on_a_space_only(monkeypatch):
    monkeypatch.delenv("BILLION_PUBLIC_VOTES", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert Settings.from_env().votes_public
    monkeypatch.setenv("SPACE_ID", "me/billion")
    assert not Settings.from_env().votes_public
    monkeypatch.setenv("BILLION_PUBLIC_VOTES", "1")
    assert Settings.from_env().votes_public


def test_a_bucket_at_data_is_told_from_a_disk(monkeypatch):
    from billion.core.paths import mount_kind

    monkeypatch.delenv("BILLION_DATA_MOUNT", raising=False)
    mounts = ("overlay / overlay rw 0 0\n/dev/vdb /data ext4 rw 0 0\n"
              "hf-mount /data/bucket fuse.hf-mount rw 0 0\nserver:/x /nfs nfs4 rw 0 0\n")
    assert mount_kind(Path("/data/billion"), mounts) == "disk"
    assert mount_kind(Path("/data/bucket/billion"), mounts) == "bucket"
    assert mount_kind(Path("/nfs/votes"), mounts) == "bucket"
    assert mount_kind(Path("/srv"), mounts) == "disk"
    monkeypatch.setenv("BILLION_DATA_MOUNT", "bucket")
    assert mount_kind(Path("/srv"), mounts) == "bucket"
