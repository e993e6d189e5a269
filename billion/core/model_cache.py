"""The app's cache of loaded models, within a memory budget, shared by everything one app does.

Streams and benchmarks lease the models they read (an entry in use is never evicted), and a
training process reserves its expected memory in the same budget while it runs.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from billion.core.download_jobs import DownloadRegistry
from billion.core.loading import LoadedModel, LoadOptions, _estimate_bytes, _key, _spec, load_fresh
from billion.core.registry import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    """One thing the budget counts: a loaded model, or memory reserved for work outside the cache."""

    label: str
    bytes: int
    #: None for a reservation (e.g. a training process)
    loaded: LoadedModel | None = None
    #: streams and runs using it now: an entry in use is never evicted
    leases: int = 0


class _KeyLock:
    """The lock that makes concurrent loads of one model wait for a single load; it lives while
    someone loads or waits, and goes when the last one leaves."""

    def __init__(self):
        self.lock = threading.Lock()
        self.users = 0


class Lease:
    """One use of a cached model; `release()` (idempotent) lets the cache evict it again."""

    def __init__(self, cache: ModelCache, key: tuple):
        self._cache, self._key, self._held = cache, key, True
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._cache._release(self._key)


class HeldStream:
    """A stream of a leased model: the lease ends when the stream does (read to its end, failed,
    closed, or dropped unread), so the model is never evicted while it still generates."""

    def __init__(self, stream: Iterator, lease: Lease):
        self._stream, self._lease = stream, lease

    def __iter__(self) -> HeldStream:
        return self

    def __next__(self):
        try:
            return next(self._stream)
        except BaseException:
            self._lease.release()
            raise

    def close(self) -> None:
        try:
            getattr(self._stream, "close", lambda: None)()
        finally:
            self._lease.release()

    def __del__(self):
        self._lease.release()


class Reservation:
    """Bytes counted against a ModelCache's budget until `release()` (idempotent)."""

    def __init__(self, cache: ModelCache, key: tuple):
        self._cache, self._key = cache, key

    def release(self) -> None:
        self._cache._drop(self._key)


class ModelCache:
    """An LRU of loaded models within a memory budget, shared by everything one app does.

    Concurrent requests for the same model wait for a single load, so there are never two copies.
    The LRU evicts the least recently used models to stay within budget, but never one in use:
    `lease` holds a model for as long as a stream or a benchmark reads it, and `reserve` counts
    memory used outside the cache (a training process) until it ends.
    """

    def __init__(self, budget_bytes: int, downloads: DownloadRegistry | None = None):
        self.budget_bytes = budget_bytes
        #: shared downloads of hub models (billion.core.download_jobs)
        self.downloads = downloads if downloads is not None else DownloadRegistry()
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._key_locks: dict[tuple, _KeyLock] = {}
        self._lock = threading.Lock()

    def load(self, name: str | ModelSpec, options: LoadOptions = LoadOptions()) -> LoadedModel:
        """Load (or reuse) a model by alias, hub id, local folder, .gguf path or spec. Not held: a
        later load may evict it; `lease` it for as long as it is used."""
        return self._acquire(_spec(name), options, lease=False)

    def get(self, spec: ModelSpec, options: LoadOptions) -> LoadedModel:
        return self._acquire(spec, options, lease=False)

    @contextmanager
    def lease(self, name: str | ModelSpec, options: LoadOptions = LoadOptions()) -> Iterator[LoadedModel]:
        """The model, kept in the cache (never evicted, never loaded twice) until the block ends."""
        spec = _spec(name)
        loaded = self._acquire(spec, options, lease=True)
        try:
            yield loaded
        finally:
            self._release(_key(spec, options))

    def acquire(self, name: str | ModelSpec, options: LoadOptions = LoadOptions()
                ) -> tuple[LoadedModel, Lease]:
        """The model and a lease on it, for a use that outlives one call (a stream: HeldStream)."""
        spec = _spec(name)
        loaded = self._acquire(spec, options, lease=True)
        return loaded, Lease(self, _key(spec, options))

    def reserve(self, label: str, nbytes: int) -> Reservation:
        """Count nbytes used outside the cache (a training run's process) against the budget until
        released; models not in use are evicted now to make room."""
        key = ("reserved", label, secrets.token_hex(4))
        with self._lock:
            self._evict_for(nbytes)
            self._entries[key] = _Entry(label, nbytes, leases=1)
        return Reservation(self, key)

    def _acquire(self, spec: ModelSpec, options: LoadOptions, lease: bool) -> LoadedModel:
        key = _key(spec, options)
        key_lock = self._enter(key)
        try:
            with key_lock.lock:
                with self._lock:
                    entry = self._entries.get(key)
                    if entry is not None and entry.loaded is not None:
                        self._entries.move_to_end(key)
                        entry.leases += int(lease)
                        return entry.loaded
                    self._evict_for(_estimate_bytes(spec, options))
                loaded = load_fresh(spec, options, self.downloads)
                with self._lock:
                    self._entries[key] = _Entry(loaded.label, loaded.weight_bytes, loaded, int(lease))
                    self._evict_for(0, keep=key)
                return loaded
        finally:
            self._leave(key)

    def _enter(self, key: tuple) -> _KeyLock:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, _KeyLock())
            key_lock.users += 1
            return key_lock

    def _leave(self, key: tuple) -> None:
        with self._lock:
            key_lock = self._key_locks[key]
            key_lock.users -= 1
            if key_lock.users == 0:
                del self._key_locks[key]

    def _release(self, key: tuple) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.leases > 0:
                entry.leases -= 1
            # A model kept over budget only because it was in use goes once nothing uses it.
            if self.used_bytes() > self.budget_bytes:
                self._evict_for(0)

    def _drop(self, key: tuple) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _evict_for(self, incoming: int, keep: tuple | None = None) -> None:
        """Drop least recently used models not in use until `incoming` more bytes fit (call with
        _lock held). What cannot go (in use, reserved, or `keep`, the model just loaded) stays,
        even over budget: taking it away would not free its memory, only lose track of it."""
        while self.used_bytes() + incoming > self.budget_bytes:
            victim = next((k for k, e in self._entries.items()
                           if e.leases == 0 and e.loaded is not None and k != keep), None)
            if victim is None:
                break
            log.info("evicting %s to stay within the model budget", self._entries.pop(victim).label)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def used_bytes(self) -> int:
        return sum(e.bytes for e in self._entries.values())

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return [e.loaded for e in self._entries.values() if e.loaded is not None]

    def in_use(self) -> list[str]:
        """Labels of the models leased and the reservations held now."""
        with self._lock:
            return [e.label for e in self._entries.values() if e.leases > 0]

    def clear(self) -> None:
        """Drop every model not in use (reservations and leased models stay)."""
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.leases == 0]:
                del self._entries[key]
