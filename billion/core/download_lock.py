"""One download per repo and commit across processes: a file lock in the Hugging Face cache.

Within one process the DownloadRegistry (billion/core/download_jobs.py) shares a download; across
processes (two app workers, the CLI `download` beside the app, a training child) the first to take
`.locks/models--ORG--NAME/billion-<commit>.lock` downloads and the others wait on it, reading its
progress from the cache folder (its finished blobs and growing `.partial` files), then find the
files there and only link the snapshot. The lock is an OS lock (flock): a process that dies, even
by SIGKILL, releases it, and the waiter resumes the partial files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from billion.core.hub_cache import hub_cache_dir, repo_folder

#: how often a waiting process reads the other's progress (and checks for its own cancel)
WAIT_POLL_S = 0.5


def repo_lock_path(repo_id: str, commit: str) -> Path:
    """Beside huggingface_hub's per-file locks (`<etag>.lock`), under a name of billion's own."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", commit)
    return hub_cache_dir() / ".locks" / repo_folder(repo_id).name / f"billion-{safe}.lock"


@contextmanager
def repo_lock(repo_id: str, commit: str, on_wait: Callable[[], None],
              poll_s: float = WAIT_POLL_S) -> Iterator[None]:
    """Hold the repo+commit download lock; while another process holds it, call on_wait every
    poll_s seconds (it reports progress, and may raise to give up waiting, e.g. on cancel)."""
    from filelock import FileLock, Timeout

    path = repo_lock_path(repo_id, commit)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    while True:
        try:
            lock.acquire(timeout=poll_s)
            break
        except Timeout:
            on_wait()
    try:
        yield
    finally:
        lock.release()
