"""One shared download per repo and revision: followers, progress, cancelling when everyone leaves."""

from __future__ import annotations

import threading
import time

import pytest

from billion.core.download_jobs import (DownloadProgress, DownloadRegistry, RateMeter, ensure_local,
                                        follow, needs_download)
from billion.core.hub_cache import complete_snapshot, repo_folder
from billion.core.registry import resolve

TINYLLAMA = resolve("tinyllama")


def requests_for(hub, suffix: str, method: str = "GET") -> int:
    return sum(1 for m, path, _ in hub.requests if m == method and path.endswith(suffix))


def test_two_sessions_share_one_download(online_hub):
    online_hub.rate_bytes_s = 200_000
    downloads = DownloadRegistry()  # the app's (AppContext.downloads): both sessions share it
    seen: dict[str, list[DownloadProgress]] = {"a": [], "b": []}

    def session(name: str) -> None:
        for update in follow(TINYLLAMA, poll_s=0.05, downloads=downloads):
            seen[name].append(update)

    threads = [threading.Thread(target=session, args=(name,)) for name in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert all(updates and updates[-1].state == "done" for updates in seen.values())
    # One plan, one transfer of each file, whoever asked.
    assert requests_for(online_hub, f"/revision/{TINYLLAMA.source.revision}") == 1
    assert requests_for(online_hub, "/model.safetensors") == 1
    # Both saw the download move, with sizes, a rate and an estimate.
    moving = [u for u in seen["a"] + seen["b"] if u.state == "downloading" and 0 < u.done_bytes < u.total_bytes]
    assert moving and any(u.rate_bytes_s > 0 and u.eta_s is not None for u in moving)
    assert not downloads.running()


def test_loading_waits_for_the_running_download_instead_of_starting_another(online_hub):
    online_hub.rate_bytes_s = 150_000
    downloads = DownloadRegistry()
    progress = follow(TINYLLAMA, poll_s=0.05, downloads=downloads)
    first = next(progress)  # the download is under way
    assert first.repo_id == TINYLLAMA.hub_id
    folder = ensure_local(TINYLLAMA, downloads)  # what loading does: join, wait, use the snapshot
    assert folder == complete_snapshot(TINYLLAMA.hub_id, TINYLLAMA.source.revision)
    progress.close()
    assert requests_for(online_hub, "/model.safetensors") == 1


def test_the_download_stops_only_when_its_last_follower_leaves(online_hub):
    online_hub.rate_bytes_s = 50_000
    downloads = DownloadRegistry()
    staying, leaving = (follow(TINYLLAMA, poll_s=0.05, downloads=downloads),
                        follow(TINYLLAMA, poll_s=0.05, downloads=downloads))
    next(staying), next(leaving)
    leaving.close()
    time.sleep(0.3)
    assert downloads.running(), "one follower left: the other still waits for the download"
    job = downloads.running()[0]
    staying.close()
    assert job.finished.wait(10) and job.progress().state == "cancelled"
    assert needs_download(TINYLLAMA)  # cancelled: nothing half-done is taken for the snapshot
    assert list(repo_folder(TINYLLAMA.hub_id).glob("blobs/*.partial")), "the partial file stays"


def test_a_cached_model_needs_no_download(offline_hub):
    assert not needs_download(TINYLLAMA) and list(follow(TINYLLAMA)) == []
    assert not needs_download(resolve("smollm2-135m"))  # package weights never download


def test_rate_is_over_a_sliding_window():
    meter = RateMeter(window_s=5.0)
    for second, total in enumerate([0, 100, 200, 300]):
        meter.add(total, now=float(second))
    assert meter.rate() == pytest.approx(100.0)
    meter.add(300, now=20.0)  # a long stall: old samples fall out, the rate drops to nothing
    assert meter.rate() == pytest.approx(0.0)


def test_progress_fraction_and_estimate():
    progress = DownloadProgress("org/m", "main", "downloading", 250, 1000, 50.0)
    assert progress.fraction == 0.25 and progress.eta_s == pytest.approx(15.0)
    assert DownloadProgress("org/m", "main", "planning", 0, 0, 0.0).eta_s is None
