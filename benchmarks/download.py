"""Download throughput: billion's fetcher vs huggingface_hub's snapshot_download, same files, one run.

    .venv/bin/python benchmarks/download.py [--megabytes 256] [--repeats 3]

Both fetch the same repo (a config, a tokenizer and one weights file of --megabytes random bytes)
from a loopback server that speaks the hub's API (tests/fake_hub.py), into fresh caches, alternately.
The network is taken out, so the figures compare the client side: requests, writing, and billion's
sha256 check of the weights (snapshot_download does no hash check over plain HTTP). Then a resume:
the same download stopped at half way and started again.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_hub import FakeHub  # noqa: E402
from hub_repos import Repo  # noqa: E402

from billion.core.table import format_table  # noqa: E402

COMMIT = "7" * 40
REPO_ID = "bench/one-model"


def repo(megabytes: int) -> Repo:
    files = {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b"{}" * 1000,
             "tokenizer_config.json": b"{}", "model.safetensors": os.urandom(megabytes << 20)}
    return Repo(REPO_ID, COMMIT, files, refs={"main": COMMIT})


def billion_download(cache: str) -> float:
    from billion.core.download_jobs import download
    from billion.core.registry import resolve

    os.environ["HF_HUB_CACHE"] = cache
    started = time.perf_counter()
    outcome = download(resolve(f"{REPO_ID}@{COMMIT}"), poll_s=0.05)
    assert outcome.check.ok, outcome
    return time.perf_counter() - started


def hub_download(cache: str, endpoint: str) -> float:
    from huggingface_hub import snapshot_download

    started = time.perf_counter()
    snapshot_download(REPO_ID, revision=COMMIT, cache_dir=cache, endpoint=endpoint, max_workers=1,
                      allow_patterns=["config.json", "tokenizer*.json", "model.safetensors"])
    return time.perf_counter() - started


def resumed(cache: str, hub: FakeHub, megabytes: int) -> tuple[float, float]:
    """(seconds to stop at half way, seconds to finish from the partial file)."""
    from billion.core.download_jobs import follow
    from billion.core.registry import resolve

    os.environ["HF_HUB_CACHE"] = cache
    spec = resolve(f"{REPO_ID}@{COMMIT}")
    started = time.perf_counter()
    progress = follow(spec, poll_s=0.02)
    for update in progress:
        if update.done_bytes >= (megabytes << 20) // 2:
            break
    progress.close()
    first = time.perf_counter() - started
    return first, billion_download(cache)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = False
    with FakeHub({"bench": repo(args.megabytes)}) as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        ours, theirs = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                ours.append(billion_download(a))
                theirs.append(hub_download(b, hub.url))
        with tempfile.TemporaryDirectory() as c:
            half, rest = resumed(c, hub, args.megabytes)
    size = args.megabytes * (1 << 20) / 1e6
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"# download · {time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} CPUs · {size:.0f} MB weights "
          f"over loopback · median of {args.repeats}")
    print(format_table(["client", "seconds", "MB/s", "vs snapshot_download"], [
        ["billion download (with sha256 check)", f"{a:.2f}", f"{size / a:.0f}", f"{b / a:.2f}x"],
        ["huggingface_hub snapshot_download", f"{b:.2f}", f"{size / b:.0f}", "1.00x"],
        ["billion: stopped at half, then resumed", f"{half:.2f} + {rest:.2f}", "", ""]]))


if __name__ == "__main__":
    main()
