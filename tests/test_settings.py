"""Settings read from the environment once, and the limits on input that live in them."""

from __future__ import annotations

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
