"""One shared download per repo and revision, with progress anyone waiting can read.

The first request for a model that is not in the cache starts a job in a background thread; later
requests for the same repo and revision (another browser session, the loader) join that job instead
of downloading again, and all of them read the same typed DownloadProgress. A job whose last
follower leaves (the person pressed Stop, closed the page) is cancelled; its partial files stay and
the next request resumes them.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from billion.core.download import (OFFLINE_MODELS, DownloadCancelled, DownloadPlan, HubUnreachable,
                                   bytes_on_disk, check_disk_space, explain, fetch_file, finish_snapshot,
                                   hub_offline, plan_download)
from billion.core.download_lock import repo_lock
from billion.core.errors import BillionError
from billion.core.hub_cache import (SnapshotCheck, cached_revisions, complete_snapshot, hub_cache_dir,
                                    verify_snapshot)
from billion.core.registry import ModelSpec

#: waiting: another process downloads this repo and commit (download_lock); its progress is shown
State = Literal["planning", "downloading", "waiting", "done", "failed", "cancelled"]
RATE_WINDOW_S = 5.0


@dataclass(frozen=True)
class FileProgress:
    path: str
    done_bytes: int
    total_bytes: int
    #: the hub's etag (sha256 for LFS files), which the finished blob is named after
    etag: str = ""


@dataclass(frozen=True)
class DownloadProgress:
    """A snapshot of one download, for any number of readers (the UI renders it; never names)."""

    repo_id: str
    revision: str
    state: State
    done_bytes: int
    total_bytes: int
    #: bytes per second over the last few seconds
    rate_bytes_s: float
    files: tuple[FileProgress, ...] = ()
    #: why it failed, when it did
    error: str = ""
    #: the commit the revision resolved to (known once planned)
    commit: str = ""

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.state not in ("downloading", "waiting") or self.rate_bytes_s <= 0:
            return None
        return max(self.total_bytes - self.done_bytes, 0) / self.rate_bytes_s


class RateMeter:
    """Throughput over a sliding window, so a stall shows as a falling rate."""

    def __init__(self, window_s: float = RATE_WINDOW_S):
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, total: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[1][0] > self.window_s:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


class DownloadJob:
    """Fetch one repo at one revision in a background thread; thread-safe progress and cancel."""

    def __init__(self, repo_id: str, revision: str):
        self.repo_id, self.revision = repo_id, revision
        self.plan: DownloadPlan | None = None
        self.folder: Path | None = None
        self.error: BillionError | None = None
        self.finished = threading.Event()
        self.followers = 0
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._state: State = "planning"
        self._done: dict[str, int] = {}
        self._meter = RateMeter()

    def start(self) -> "DownloadJob":
        threading.Thread(target=self._run, name=f"download {self.repo_id}", daemon=True).start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    def _run(self) -> None:
        try:
            plan = plan_download(self.repo_id, self.revision)
            check_disk_space(plan)
            self.plan = plan
            self._recount("downloading")  # bytes already here count as done, not as rate
            with repo_lock(plan.repo_id, plan.commit, self._waiting):  # one download across processes
                self._recount("downloading")  # what another process fetched meanwhile
                for file in plan.files:
                    self._check_cancel()
                    fetch_file(plan, file, lambda n, path=file.path: self._advance(path, n))
                    with self._lock:
                        self._done[file.path] = file.size
                finish_snapshot(plan)
            self.folder = complete_snapshot(self.repo_id, plan.commit)
            if self.folder is None:
                raise BillionError(f"{self.repo_id} downloaded but its snapshot is incomplete: run "
                                   f"`python -m billion download {self.repo_id}` again.")
            self._finish("done")
        except DownloadCancelled as exc:
            self._finish("cancelled", exc)
        except BillionError as exc:
            self._finish("failed", exc)
        except Exception as exc:  # anything else still ends the job, with the reason kept
            self._finish("failed", explain(self.repo_id, self.revision, exc))

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise DownloadCancelled(f"The download of {self.repo_id} was cancelled.")

    def _recount(self, state: State) -> None:
        """Done bytes as the cache holds them now: blobs, and partial files (ours or another's)."""
        plan = self.plan
        assert plan is not None
        done = {f.path: bytes_on_disk(plan.repo_id, f) for f in plan.files}
        with self._lock:
            self._state, self._done = state, done
            self._meter.add(sum(done.values()))

    def _waiting(self) -> None:
        """Another process holds the download lock: follow its progress from the cache."""
        self._check_cancel()
        self._recount("waiting")

    def _advance(self, path: str, n: int) -> None:
        self._check_cancel()
        with self._lock:
            self._done[path] = self._done.get(path, 0) + n
            self._meter.add(sum(self._done.values()))

    def _finish(self, state: State, error: BillionError | None = None) -> None:
        with self._lock:
            self._state, self.error = state, error
        self.finished.set()

    def progress(self) -> DownloadProgress:
        with self._lock:
            files = tuple(FileProgress(f.path, min(self._done.get(f.path, 0), f.size), f.size, f.etag)
                          for f in (self.plan.files if self.plan else ()))
            return DownloadProgress(
                self.repo_id, self.revision, self._state, sum(f.done_bytes for f in files),
                sum(f.total_bytes for f in files), self._meter.rate(), files,
                str(self.error) if self.error else "", self.plan.commit if self.plan else "")


class DownloadRegistry:
    """The jobs running in one app, one per (repo, revision): the app context holds it (as its model
    cache's `downloads`), so every session of the app joins the same download."""

    def __init__(self):
        self._jobs: dict[tuple[str, str], DownloadJob] = {}
        self._lock = threading.Lock()

    def attach(self, repo_id: str, revision: str) -> DownloadJob:
        """Join the running job for this repo and revision, or start one."""
        with self._lock:
            job = self._jobs.get((repo_id, revision))
            if job is None or job.finished.is_set():
                job = self._jobs[(repo_id, revision)] = DownloadJob(repo_id, revision).start()
            job.followers += 1
            return job

    def detach(self, job: DownloadJob) -> None:
        """Leave a job; the last one to leave an unfinished job cancels it."""
        with self._lock:
            job.followers -= 1
            if job.followers <= 0 and not job.finished.is_set():
                job.cancel()
            if job.followers <= 0 and self._jobs.get((job.repo_id, job.revision)) is job:
                del self._jobs[(job.repo_id, job.revision)]

    def running(self) -> list[DownloadJob]:
        with self._lock:
            return [j for j in self._jobs.values() if not j.finished.is_set()]


def hub_revision(spec: ModelSpec) -> str:
    return spec.source.revision or "main"


def needs_download(spec: ModelSpec) -> bool:
    """A hub model whose snapshot is not (completely) in the cache."""
    return spec.source.kind == "hub" and complete_snapshot(spec.hub_id, hub_revision(spec)) is None


def not_cached_offline(spec: ModelSpec) -> BillionError:
    revision = hub_revision(spec)
    cached = cached_revisions(spec.hub_id)
    have = f" (cached: {', '.join(cached)})" if cached else ""
    return HubUnreachable(f"{spec.hub_id} at revision {revision} is not in the Hugging Face cache "
                          f"({hub_cache_dir()}){have} and HF_HUB_OFFLINE=1 forbids downloading it: "
                          f"unset HF_HUB_OFFLINE and run `python -m billion download {spec.alias}`, "
                          f"or pick an offline model ({OFFLINE_MODELS}).")


def follow(spec: ModelSpec, poll_s: float = 0.5, check_hub: bool = False,
           downloads: DownloadRegistry | None = None) -> Iterator[DownloadProgress]:
    """Progress of the shared download of `spec` until it is in the cache; nothing when it already
    is (unless check_hub: then the hub is asked whether the revision has files we lack).

    downloads: where running downloads are shared (the app's; None: one of its own).
    Raises the download's BillionError if it fails. Closing the generator leaves the job.
    """
    if spec.source.kind != "hub" or (not check_hub and not needs_download(spec)):
        return
    if hub_offline():
        if needs_download(spec):
            raise not_cached_offline(spec)
        return
    downloads = downloads if downloads is not None else DownloadRegistry()
    job = downloads.attach(spec.hub_id, hub_revision(spec))
    try:
        while not job.finished.wait(poll_s):
            yield job.progress()
        if job.error is not None:
            raise job.error
        yield job.progress()
    finally:
        downloads.detach(job)


def ensure_local(spec: ModelSpec, downloads: DownloadRegistry | None = None) -> Path:
    """The cached snapshot folder of a hub model, downloading it first (shared in `downloads`)."""
    revision = hub_revision(spec)
    folder = complete_snapshot(spec.hub_id, revision)
    if folder is None:
        for _ in follow(spec, downloads=downloads):
            pass
        folder = complete_snapshot(spec.hub_id, revision)
    if folder is None:
        raise BillionError(f"{spec.hub_id} at {revision} is still incomplete in the cache: run "
                           f"`python -m billion download {spec.alias}`.")
    return folder


@dataclass(frozen=True)
class DownloadOutcome:
    spec: ModelSpec
    check: SnapshotCheck
    #: how the check was made when the hub could not be asked ("" when it was)
    note: str = ""


def _drop_damaged(check: SnapshotCheck) -> bool:
    """Remove snapshot files whose content does not match their etag, so a download fetches them
    again; True if any were removed."""
    damaged = [check.folder / f.path for f in check.files if f.check == "mismatch" and check.folder]
    for pointer in damaged:
        Path(os.path.realpath(pointer)).unlink(missing_ok=True)
        pointer.unlink(missing_ok=True)
    return bool(damaged)


def download(spec: ModelSpec, on_progress: Callable[[DownloadProgress], None] = lambda p: None,
             poll_s: float = 0.5, downloads: DownloadRegistry | None = None) -> DownloadOutcome:
    """Bring a hub model's snapshot up to date with the hub (or check the cached one when the hub
    cannot be asked), then verify every file: sizes, and sha256 / git sha1 against the etags.
    Files found damaged are removed and fetched once more."""
    outcome = _download_and_check(spec, on_progress, poll_s, downloads)
    if not outcome.check.ok and not outcome.note and _drop_damaged(outcome.check):
        outcome = _download_and_check(spec, on_progress, poll_s, downloads)
    return outcome


def _download_and_check(spec: ModelSpec, on_progress: Callable[[DownloadProgress], None],
                        poll_s: float, downloads: DownloadRegistry | None) -> DownloadOutcome:
    revision, expected, note = hub_revision(spec), None, ""
    if hub_offline():
        note = "HF_HUB_OFFLINE=1: checked the cached copy only"
    else:
        try:
            last = None
            for last in follow(spec, poll_s, check_hub=True, downloads=downloads):
                on_progress(last)
            if last is not None:
                revision = last.commit or revision
                expected = {f.path: (f.total_bytes, f.etag) for f in last.files}
        except HubUnreachable:
            if complete_snapshot(spec.hub_id, revision) is None:
                raise
            note = "the hub is unreachable: checked the cached copy only"
    return DownloadOutcome(spec, verify_snapshot(spec.hub_id, revision, expected), note)


def follow_many(specs: list[ModelSpec], downloads: DownloadRegistry | None = None,
                poll_s: float = 0.5) -> Iterator[tuple[DownloadProgress | None, ...]]:
    """follow() for several models at once (the two sides of a comparison): the latest progress of
    each (None before its first report), until all are in the cache. Closing leaves every job."""
    streams = [follow(spec, poll_s, downloads=downloads) for spec in specs]
    latest: list[DownloadProgress | None] = [None] * len(specs)
    active = list(range(len(specs)))
    try:
        while active:
            for i in list(active):
                try:
                    latest[i] = next(streams[i])
                except StopIteration:
                    active.remove(i)
            if active:
                yield tuple(latest)
    finally:
        for stream in streams:
            stream.close()
