"""The app's watch over a training process (billion.train.watch): a process over its memory share
is killed with a message, its run fails with the reason, and its budget reservation is released."""

from __future__ import annotations

import subprocess
import sys

from billion.core.model_cache import ModelCache
from billion.train.data import load_dataset
from billion.train.config import TrainConfig
from billion.train.folder import create_run, read_run
from billion.train.watch import Child, watch

# A stand-in for a training step that keeps growing: 400 MB, then it waits to be stopped.
GROWS = "import time; x = bytearray(400 * 2**20); x[::4096] = b'1' * len(x[::4096]); time.sleep(60)"


def test_a_process_over_its_memory_share_is_killed_and_its_run_fails(tiny_dir, data_file, tmp_path):
    run_dir = create_run(TrainConfig(model=str(tiny_dir), max_steps=2), load_dataset(data_file), root=tmp_path)
    cache = ModelCache(2**30)
    reservation = cache.reserve(f"training run {run_dir.name}", 100 * 2**20)
    popen = subprocess.Popen([sys.executable, "-c", GROWS])
    child = Child(run_dir, popen, estimate_bytes=100 * 2**20, memory_limit=200 * 2**20,
                  reservation=reservation, time_limit_s=None, grace_s=5)
    watch(child, store=None, poll_s=0.1)
    assert popen.returncode < 0  # killed, not left to finish its sleep
    record = read_run(run_dir)
    assert record["status"] == "failed"
    assert "over the 0.2 GB a run may take here" in record["error"]
    assert "lower the batch size" in record["error"]
    assert cache.in_use() == [] and cache.used_bytes() == 0


def test_a_process_past_its_time_is_asked_to_stop_then_killed(tiny_dir, data_file, tmp_path):
    run_dir = create_run(TrainConfig(model=str(tiny_dir), max_steps=2), load_dataset(data_file), root=tmp_path)
    # Ignores SIGTERM, as a process stuck in a long step would not get to the stop check.
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    popen = subprocess.Popen([sys.executable, "-c", stubborn])
    child = Child(run_dir, popen, estimate_bytes=0, memory_limit=2**40, reservation=None,
                  time_limit_s=0.2, grace_s=0.5)
    watch(child, store=None, poll_s=0.1)
    record = read_run(run_dir)
    assert record["status"] == "failed" and "did not stop within 0.5 s" in record["error"]
