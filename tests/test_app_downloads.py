"""First use of a hub model in the race, the trainer and the Leaderboard's runs: the download's
progress (MB of total, rate, time left) shows and moves, and Stop / Cancel ends it with a message.

One app served in this process (tests/app_server.py) against a loopback hub (tests/fake_hub.py)
that sends the tiny TinyLlama stand-in slowly; each test starts from an empty Hugging Face cache.
"""

from __future__ import annotations

import re
import time

import pytest
from app_server import serve_app
from fake_hub import FakeHub
from gradio_client import Client, handle_file

from billion.context import build_context
from billion.core.download_jobs import needs_download
from billion.core.registry import resolve
from billion.core.settings import Settings
from billion.ui.trainer import SAMPLE_DATA

PROGRESS = re.compile(r"Downloading \*\*TinyLlama-1\.1B-Chat\*\* \(first use on this server\): "
                      r"\*\*([\d.]+) of ([\d.]+) MB\*\* · [\d.]+ [kM]B/s · (about \d+ s left|estimating)")
TINYLLAMA = resolve("tinyllama")


@pytest.fixture(scope="module")
def hub(hub_repos, tmp_path_factory):
    """The loopback hub, online, no token: about 10 s for the whole tiny TinyLlama (0.23 MB), so the
    shown MB (one decimal) moves before a test cancels it."""
    from huggingface_hub import constants

    total = sum(len(data) for data in hub_repos["tinyllama"].files.values())
    with FakeHub(hub_repos, rate_bytes_s=total / 10) as server, pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once at import; tests run offline
        patch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path_factory.mktemp("no-token") / "token"))
        patch.setenv("HF_HUB_OFFLINE", "0")
        patch.setenv("HF_ENDPOINT", server.url)
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
            patch.delenv(name, raising=False)
        yield server


@pytest.fixture(scope="module")
def app(hub, tmp_path_factory, models):
    ctx = build_context(Settings.in_folder(tmp_path_factory.mktemp("downloads-app")), models)
    with serve_app(ctx=ctx) as url:
        yield ctx, Client(url, verbose=False)
    ctx.store.close()


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def moving_progress(job, text_of) -> list[tuple[float, float]]:
    """The (done MB, total MB) pairs shown in the job's outputs, until the done figure has moved."""
    seen: list[tuple[float, float]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len({done for done, _ in seen}) < 2 and not job.done():
        seen = [(float(m[1]), float(m[2])) for m in
                (PROGRESS.search(str(text_of(o) or "")) for o in job.outputs()) if m]
        time.sleep(0.1)
    assert len({done for done, _ in seen}) >= 2, f"no moving download progress in {job.outputs()[-3:]}"
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and {t for _, t in seen} == {0.2}
    return seen


def assert_stopped(ctx) -> None:
    """The download job ended, cancelled, and the model is still not in the cache."""
    deadline = time.monotonic() + 15
    while ctx.downloads.running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not ctx.downloads.running(), "the download went on after the cancel"
    assert needs_download(TINYLLAMA)


def test_race_shows_the_download_and_stop_cancels_it(app):
    ctx, client = app
    # prompt, target, draft, self layers, k, dynamic, temperature, max new tokens, reference, warm-up
    job = client.submit("Repeat: a b c.", "tinyllama", "prompt-lookup", 8, 4, False, 0, 4, False,
                        False, api_name="/race")
    moving_progress(job, lambda outputs: outputs[2])  # the figures pane
    job.cancel()  # what the page's Stop does to the running race (gradio's `cancels=`), then it says:
    assert "download under way was cancelled" in client.predict(api_name="/race_stop")
    assert_stopped(ctx)


def test_trainer_shows_the_base_model_download_and_cancel_stops_it(app):
    ctx, client = app
    job = client.submit(handle_file(str(SAMPLE_DATA)), "tinyllama", 1, 4, 2e-3, 64, "",
                        api_name="/train")
    moving_progress(job, lambda outputs: (outputs[0] or {}).get("download"))
    job.cancel()  # the page's Stop cancels its start the same way, and says so:
    assert "download of the base model under way was cancelled" in client.predict(
        None, api_name="/trainer_stop")
    assert_stopped(ctx)
    assert not ctx.runs.training(), "a run started although its base model never arrived"


def test_benchmark_run_shows_each_download_and_cancel_says_so(app):
    ctx, client = app
    # models, tasks, limit, dtype, quantization, seed, speed prompt lengths, new tokens, timed runs
    job = client.submit(["tinyllama"], ["speed"], 2, "auto", "none", 1234, "16", 2, 1,
                        api_name="/bench")
    moving_progress(job, lambda outputs: outputs[0])
    assert "Cancelling" in client.predict(api_name="/bench_cancel")
    status, _, summary = job.result(timeout=30)
    assert "Cancelled while downloading TinyLlama-1.1B-Chat" in status and "resumes" in status
    assert summary["scores"] == [] and not summary["failed"]
    assert_stopped(ctx)
