"""`python -m billion download`: present and verified from the cache, progress bars, one-line failures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from billion.cli import main
from billion.core.registry import COMPARED

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_compared_against_the_offline_cache_are_present_and_verified(offline_hub, capsys):
    assert main(["download", "--compared"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == list(COMPARED)
    assert all("present and verified" in line and "checked against their sha256/git sha1" in line
               for line in lines)


def test_a_model_missing_from_the_offline_cache_fails(offline_hub, capsys):
    assert main(["download", "pythia-1b", "--revision", "step5000"]) == 2
    assert "MISSING" in capsys.readouterr().out


def test_download_shows_bars_and_verifies(online_hub, capsys):
    assert main(["download", "pythia-1b", "--revision", "step3000"]) == 0
    out = capsys.readouterr()
    assert "pythia-1b@step3000: present and verified" in out.out
    assert "pythia-1b@step3000 (total)" in out.err and "pytorch_model.bin" in out.err  # total + per-file bars


def test_gated_without_token_fails_that_model_only(online_hub, capsys):
    assert main(["download", "llama3.2-1b", "tinyllama"]) == 2
    out = capsys.readouterr()
    assert "error: llama3.2-1b: meta-llama/Llama-3.2-1B-Instruct is gated" in out.err
    assert "tinyllama: present and verified" in out.out


def test_nothing_named_is_an_error(capsys):
    assert main(["download"]) == 2
    assert "--compared" in capsys.readouterr().err


def test_an_unreachable_hub_is_one_line_and_a_failure(tmp_path):
    """A real process, as a person runs it: the hub's offline switch is read at import."""
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HF_HUB_CACHE": str(tmp_path / "empty"), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", "billion", "download", "--compared"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: The Hugging Face hub (http://127.0.0.1:9) "
                                                     "is unreachable"), done.stderr


def test_a_download_another_process_holds_says_so_once(capsys):
    from billion.commands.download import Bars
    from billion.core.download_jobs import DownloadProgress, FileProgress

    bars = Bars("tinyllama")
    for done in (100, 300):  # two polls while the other process downloads
        bars.update(DownloadProgress("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "main", "waiting", done, 1000,
                                     100.0, (FileProgress("model.safetensors", done, 1000),)))
    bars.close()
    err = capsys.readouterr().err
    assert err.count("tinyllama: waiting for another process downloading TinyLlama/TinyLlama-1.1B-Chat-v1.0") == 1
