"""Download progress as the tabs show it: sizes, rate and time left; in the Arena only a share done,
because a size or a repo name would tell which model is answering before the vote.

Chat, the race, the trainer and the Leaderboard's runs all render one line per model with
`progress_line` (`download_notes` follows the downloads for the last three).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Sequence

from billion.arena.battle import Battle, blind_errors
from billion.core.download import DownloadCancelled
from billion.core.download_jobs import (DownloadProgress, DownloadRegistry, follow_many, hub_revision,
                                        needs_download)
from billion.core.hub_cache import snapshot_bytes
from billion.core.registry import ModelSpec, resolve
from billion.endpoints.config import is_endpoint_name

#: what Stop says in a tab whose work may have been waiting for a download
STOPPED_NOTE = ("⏹ Stopped. A download under way was cancelled (unless another session still waits "
                "for it): what arrived stays in the cache and the next use resumes it.")


def _megabytes(n: int) -> str:
    return f"{n / 1e6:,.0f}" if n >= 10e6 else f"{n / 1e6:,.1f}"


def _rate(bytes_s: float) -> str:
    return f"{bytes_s / 1e6:.1f} MB/s" if bytes_s >= 1e6 else f"{bytes_s / 1e3:.0f} kB/s"


def _time_left(seconds: float | None) -> str:
    if seconds is None:
        return "estimating time left"
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s left"
    return f"about {seconds / 60:.0f} min left"


def progress_line(progress: DownloadProgress | None, name: str) -> str:
    """One model's download as every named tab shows it: MB of total, rate, time left."""
    if progress is None or progress.state == "planning":
        return f"⬇️ Looking up **{name}** on the Hugging Face hub (first use on this server)…"
    if progress.state == "waiting":  # another process (an app worker, the CLI) fetches it
        return (f"⏳ Waiting for another process downloading **{name}**: "
                f"**{_megabytes(progress.done_bytes)} of {_megabytes(progress.total_bytes)} MB** · "
                f"{_rate(progress.rate_bytes_s)} · {_time_left(progress.eta_s)} · Stop stops waiting.")
    if progress.state == "done":
        return f"✅ **{name}** downloaded ({_megabytes(progress.total_bytes)} MB); loading it…"
    return (f"⬇️ Downloading **{name}** (first use on this server): "
            f"**{_megabytes(progress.done_bytes)} of {_megabytes(progress.total_bytes)} MB** · "
            f"{_rate(progress.rate_bytes_s)} · {_time_left(progress.eta_s)} · Stop cancels it.")


def to_download(names: Iterable[str]) -> list[ModelSpec]:
    """The hub models among `names` that are not (completely) in the cache, each repo and revision
    once; endpoint models need none, and a trainer adapter ("<alias>+lora:<label>") needs its base."""
    found: dict[tuple[str, str], ModelSpec] = {}
    for name in names:
        if not name or is_endpoint_name(name):
            continue
        spec = resolve(name.split("+lora:")[0])
        if needs_download(spec):
            found.setdefault((spec.hub_id, hub_revision(spec)), spec)
    return list(found.values())


def download_notes(specs: Sequence[ModelSpec], downloads: DownloadRegistry,
                   cancel: threading.Event | None = None) -> Iterator[str]:
    """Progress lines (one per model, as Chat shows them) until every model is in the cache.

    Closing the iterator, or setting `cancel` (then DownloadCancelled is raised), leaves the shared
    downloads: one nobody else waits for stops, and its partial files stay for a resume."""
    stream = follow_many(list(specs), downloads)
    try:
        for updates in stream:
            if cancel is not None and cancel.is_set():
                names = ", ".join(spec.display_name for spec in specs)
                raise DownloadCancelled(f"Cancelled while downloading {names}: what arrived stays in "
                                        "the cache and the next run resumes it.")
            yield "\n\n".join(progress_line(update, spec.display_name)
                               for update, spec in zip(updates, specs))
    finally:
        stream.close()


def blind_line(progresses: Sequence[DownloadProgress | None]) -> str:
    """Downloads for an Arena battle before the vote: no names, sizes or rates, only a share done."""
    whose = "both contestants' weights" if len(progresses) > 1 else "a contestant's weights"
    known = [p for p in progresses if p is not None and p.total_bytes]
    if not known:
        return f"⬇️ Downloading {whose} (first use on this server)…"
    done, total = sum(p.done_bytes for p in known), sum(p.total_bytes for p in known)
    rate = sum(p.rate_bytes_s for p in known)
    left = (total - done) / rate if rate > 0 else None
    return (f"⬇️ Downloading {whose} (first use on this server): **{done / total:.0%}** · "
            f"{_time_left(left)}. Sizes are shown after the vote; Stop cancels the download.")


def arena_downloads(battle: Battle, downloads: DownloadRegistry) -> Iterator[str]:
    """Blind status lines while the battle's contestants download (first use of a hub model here);
    errors name no model (blind_errors)."""
    specs = {}
    with blind_errors(battle):
        for contestant in (battle.model_a, battle.model_b):
            if contestant.endpoint is not None:  # its server holds the weights
                continue
            spec = resolve(contestant.alias)
            if needs_download(spec):
                specs[(spec.hub_id, spec.source.revision)] = spec
        for progresses in follow_many(list(specs.values()), downloads):
            yield blind_line(progresses)


def weight_sizes(battle: Battle) -> tuple[str, str]:
    """Each side's weights on disk (left, right), for the reveal only."""
    sizes = []
    for side in ("left", "right"):
        contestant = battle.contestant(battle.seat(side))  # type: ignore[arg-type]
        if contestant.endpoint is not None:
            sizes.append(f"served by {contestant.endpoint.host}")
            continue
        spec = resolve(contestant.alias)
        size = snapshot_bytes(spec.hub_id, spec.source.revision or "main") if spec.source.kind == "hub" else 0
        sizes.append(f"{size / 1e6:,.0f} MB" if size else spec.source.kind.replace("_", " "))
    return sizes[0], sizes[1]
