"""One download per repo and commit across processes (billion/core/download_lock.py): two real
processes against the loopback hub fetch each file once; a process that finds the lock taken
waits, shows the other's progress, and can stop waiting."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from filelock import FileLock

from billion.core.download_jobs import DownloadRegistry, follow, needs_download
from billion.core.download_lock import repo_lock_path
from billion.core.registry import resolve
from billion.ui.downloads import progress_line

REPO_ROOT = Path(__file__).resolve().parent.parent
TINYLLAMA = resolve("tinyllama")


def file_gets(hub) -> Counter:
    return Counter(path.rsplit("/", 1)[-1] for method, path, _ in hub.requests
                   if method == "GET" and "/resolve/" in path)


#: a worker process that needs the model: billion's engine, as an app worker or the CLI runs it
WORKER = """
from billion.core.download_jobs import download
from billion.core.registry import resolve
states = set()
outcome = download(resolve("tinyllama"), on_progress=lambda p: states.add(p.state), poll_s=0.1)
print("verified" if outcome.check.ok else "damaged", "waited" if "waiting" in states else "fetched")
"""


def test_two_processes_download_each_file_once(online_hub, hub_repos, tmp_path):
    total = sum(len(data) for data in hub_repos["tinyllama"].files.values())
    online_hub.rate_bytes_s = total / 3  # about 3 s: longer than the two processes' start-up skew
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "PYTHONPATH": str(REPO_ROOT),
           "HF_HOME": str(tmp_path / "hf-home")}
    runs = [subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert sorted(out.strip() for out, _ in outputs) == ["verified fetched", "verified waited"], outputs
    gets = file_gets(online_hub)
    assert set(gets) == set(hub_repos["tinyllama"].files) and set(gets.values()) == {1}, gets


def test_a_waiting_process_shows_the_others_progress_and_can_stop(online_hub, hub_repos):
    plan_commit = hub_repos["tinyllama"].commit
    path = repo_lock_path(TINYLLAMA.hub_id, plan_commit)
    path.parent.mkdir(parents=True, exist_ok=True)
    other = FileLock(str(path))  # another process's lock (flock: a second descriptor conflicts)
    other.acquire()
    try:
        updates = follow(TINYLLAMA, poll_s=0.1, downloads=DownloadRegistry())
        waiting = next(p for p in updates if p.state == "waiting")
        assert waiting.total_bytes == sum(len(d) for d in hub_repos["tinyllama"].files.values())
        assert "Waiting for another process downloading **TinyLlama-1.1B-Chat**" in progress_line(
            waiting, TINYLLAMA.display_name)
        updates.close()  # the last follower leaves: the job stops waiting
    finally:
        other.release()
    assert file_gets(online_hub) == Counter() and needs_download(TINYLLAMA)
