"""How the tabs show a download: sizes, rate and time left in Chat; blind progress in the Arena."""

from __future__ import annotations

import re

import pytest

from billion.arena.battle import answer_turn, contestant_loader, new_battle
from billion.arena.contestants import Contestant
from billion.core.download_jobs import DownloadProgress
from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings
from billion.ui.downloads import arena_downloads, blind_line, progress_line, weight_sizes

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work on a shared 2-core CPU (conftest.py)

NAMES = re.compile(r"tinyllama|pythia|llama|eleuther|meta|\bMB\b|MB/s|\.safetensors", re.IGNORECASE)


def test_chat_line_has_sizes_rate_and_time_left():
    progress = DownloadProgress("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "main", "downloading",
                                512_000_000, 2_200_119_864, 45_000_000.0)
    line = progress_line(progress, "TinyLlama-1.1B-Chat")
    assert "**512 of 2,200 MB**" in line and "45.0 MB/s" in line and "about 38 s left" in line
    assert "Stop cancels it" in line
    assert "Looking up" in progress_line(None, "TinyLlama-1.1B-Chat")
    slow = DownloadProgress("org/m", "main", "downloading", 1_000, 200_000, 25_000.0)
    assert "25 kB/s" in progress_line(slow, "m") and "0.0 of 0.2 MB" in progress_line(slow, "m")


def test_arena_line_names_nothing_and_gives_no_size():
    a = DownloadProgress("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "main", "downloading", 100, 400, 10.0)
    b = DownloadProgress("EleutherAI/pythia-1b", "main", "downloading", 100, 600, 10.0)
    line = blind_line((a, b))
    assert "both contestants' weights" in line and "**20%**" in line and "about 40 s left" in line
    assert not NAMES.search(line)


def test_arena_downloads_blind_then_the_battle_runs(online_hub, models):
    online_hub.rate_bytes_s = 300_000
    pair = (Contestant("tinyllama"), Contestant("pythia-1b"))
    battle = new_battle(*pair, SamplingSettings(temperature=0.0, max_new_tokens=3), session_id="t")
    lines = list(arena_downloads(battle, models.downloads))
    assert lines and all(not NAMES.search(line) for line in lines)
    assert any(re.search(r"\*\*\d+%\*\*", line) for line in lines)
    assert list(arena_downloads(battle, models.downloads)) == []  # both are in the cache now
    assert answer_turn(battle, "Name a colour.", contestant_loader(models)).status == "ready"
    assert all(re.fullmatch(r"[\d.,]+ MB", size) for size in weight_sizes(battle))


def test_arena_download_errors_name_no_model(online_hub, models):
    battle = new_battle(Contestant("llama3.2-1b"), Contestant("tinyllama"), SamplingSettings(),
                        session_id="t")
    with pytest.raises(BillionError) as caught:
        list(arena_downloads(battle, models.downloads))
    message = str(caught.value)
    assert "gated" in message and "HF_TOKEN" in message and "unrecorded" in message
    assert "Llama-3.2" not in message and "meta-llama" not in message
