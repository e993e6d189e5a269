"""Faults in a running app: a model that fails to load mid-session, a training run that crashes, a
benchmark item that hangs. Each time the person is told what happened and what to do, and the same
app then answers a normal /chat request. docs/faults.md has the table.

The app is the real one (tests/app_server.py), served from this process in an app context of its
own (data, store and converted-weights cache in temporary folders, an empty model cache); the
converted-weights cache starts as hard links to this machine's converted SmolLM2, so damaging the
test's copy never touches the real one.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from app_server import serve_app
from gradio_client import Client
from gradio_client.exceptions import AppError

from billion.bench import humaneval
from billion.bench.sandbox import SandboxLimits
from billion.context import AppContext, build_context
from billion.core import weights
from billion.core.registry import MODELS, resolve
from billion.core.settings import Settings

MODEL = "smollm2-135m"
pytestmark = [
    pytest.mark.skipif(not any(m.alias == MODEL for m in MODELS), reason="needs the offline SmolLM2 entry"),
    pytest.mark.usefixtures("one_thread"),  # tiny work on a shared 2-core CPU (conftest.py)
]


@dataclass(frozen=True)
class Served:
    url: str
    #: the app's context: its model cache, store and runs
    ctx: AppContext
    #: the app's converted SmolLM2 folder (in the test's cache)
    converted: Path
    #: this machine's converted SmolLM2, which the app's folder links to
    source: Path


def link_copy(source: Path, target: Path) -> None:
    """target as a copy of source made of hard links (a plain copy across file systems)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in source.iterdir():
        try:
            os.link(path, target / path.name)
        except OSError:
            shutil.copy2(path, target / path.name)


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Served:
    gguf = weights.package_gguf_path(resolve(MODEL))
    data, cache = tmp_path_factory.mktemp("faults-data"), tmp_path_factory.mktemp("faults-cache")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("BILLION_CACHE_DIR", raising=False)
        source = weights.ensure_converted(gguf)  # converts once per machine, ~20 s
        env.setenv("BILLION_CACHE_DIR", str(cache))
        converted = weights.converted_dir(gguf)
        link_copy(source, converted)
        # A model cache of its own: nothing loaded elsewhere in this process hides the faults.
        ctx = build_context(Settings.in_folder(data))
        with serve_app(ctx=ctx) as url:
            served = Served(url, ctx, converted, source)
            assert answer(Client(url, verbose=False))  # the session works before anything breaks
            yield served
        ctx.close()  # models loaded from the test's cache must not outlive it


def answer(client: Client, prompt: str = "Say hello.", tokens: int = 6) -> str:
    """A short greedy /chat answer: the check that the app still serves normal requests."""
    chat_a, *_ = client.predict(prompt, [], [], False, MODEL, MODEL, "", 0.0, 0.95, 0, 1.0, tokens, 0, "auto",
                                api_name="/chat")
    content = chat_a[-1]["content"]
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content)


# ---- a model that fails to load mid-session ------------------------------------------------------

def damage(folder: Path, how: str) -> None:
    """Break the app's converted weights the way a full disk or an interrupted copy would.
    Each file is unlinked first, so the machine's real cache (hard links) stays whole."""
    weights_file = folder / "model.safetensors"
    if how == "truncated":
        with weights_file.open("rb") as handle:
            head = handle.read(1_000_000)
        weights_file.unlink()
        weights_file.write_bytes(head)
    elif how == "garbage":
        weights_file.unlink()
        weights_file.write_bytes(os.urandom(4096))
    elif how == "deleted":
        weights_file.unlink()


@pytest.mark.parametrize("how", ["truncated", "deleted"])
def test_damaged_weights_mid_session_say_what_to_do(app, how):
    client = Client(app.url, verbose=False)
    app.ctx.models.clear()  # the model left memory (the cache evicts the least recently used)
    damage(app.converted, how)
    with pytest.raises(AppError) as failure:
        answer(client)
    message = str(failure.value)
    assert f"converted weights of {MODEL}" in message and str(app.converted) in message
    assert "send the request again" in message and "rebuilds it from the GGUF" in message
    assert not app.converted.exists()  # the damaged cache is gone, so a retry converts afresh
    link_copy(app.source, app.converted)  # stands in for the rebuild (the slow test does it for real)
    assert answer(client)


def test_a_full_disk_at_first_start_still_answers(app, caplog):
    """The disk refuses the quantized weights' cache entry on a first start (for real, past 32 MiB:
    tests/disk_limits.py; SmolLM2's int8 entry is ~170 MiB): the answer comes from the model in memory."""
    from disk_limits import files_capped_at

    client = Client(app.url, verbose=False)
    app.ctx.models.clear()
    quantized = app.converted.parent.parent / "quantized"
    shutil.rmtree(quantized)  # the next load quantizes and stores afresh: a first start
    with files_capped_at(32 << 20):
        assert answer(client)
    assert "could not cache the quantized weights" in caplog.text
    assert not any(quantized.glob("*/model.safetensors"))  # nothing half-written is left to read


@pytest.mark.slow
def test_retry_after_damaged_weights_rebuilds_them(app):
    client = Client(app.url, verbose=False)
    app.ctx.models.clear()
    damage(app.converted, "garbage")
    with pytest.raises(AppError, match="send the request again"):
        answer(client)
    assert answer(client)  # converted again from the GGUF shipped in the package
    assert (app.converted / "billion-source.json").is_file()


# Training out of memory: the run trains in a child process now, so the fault is injected there
# (tests/train_child_faults.py) and checked against a launched app in tests/test_app_train_faults.py.


# ---- a benchmark item that hangs ------------------------------------------------------------------

def test_hanging_benchmark_item_times_out_and_the_app_answers_meanwhile(app, monkeypatch):
    """HumanEval/0 with a check that never returns: whatever the model writes, the item hangs in the
    sandbox until its wall-clock limit kills it; the run reports it and completes."""
    first = humaneval.load_problems()[0]
    hanging = dataclasses.replace(first, test="def check(candidate):\n    while True:\n        pass\n")
    monkeypatch.setattr(humaneval, "load_problems", lambda: (hanging,))
    limit_s = SandboxLimits().seconds
    chat = Client(app.url, verbose=False)
    answer(chat)  # the model is loaded before the race below starts

    started = time.monotonic()
    job = Client(app.url, verbose=False).submit([MODEL], ["humaneval"], 1, "auto", "none", 0, "16", 4, 1,
                                               api_name="/bench")
    assert answer(chat)
    answered_during_run = not job.done()
    status, run_table, summary = job.result(timeout=300)
    elapsed = time.monotonic() - started

    assert answered_during_run, "the chat answer came only after the hanging item ended"
    assert limit_s <= elapsed < limit_s + 120
    assert "1 of 1 tasks done" in status and "⚠️" not in status
    assert f"ran past the {limit_s:g} s sandbox limit and count as failed: HumanEval/0" in status
    (score,) = summary["scores"]
    assert score["metric"] == "pass@1" and score["score"] == 0 and summary["failed"] == []
    assert summary["notes"] and "HumanEval/0" in summary["notes"][0]["note"]
    assert answer(chat)
