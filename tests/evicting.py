"""Eviction under use: a second thread loads another model into a small cache while a first thread is
in the middle of using its models (a bench run, a battle, a race), as another session would."""

from __future__ import annotations

import threading
from typing import Any, Callable

from billion.core.loading import LoadedModel, LoadOptions
from billion.core.model_cache import ModelCache


def budget_for(*loaded: LoadedModel) -> ModelCache:
    """A cache with room for exactly these models: any other load has to evict one of them."""
    return ModelCache(sum(m.weight_bytes for m in loaded) + 1)


class Evictor:
    """The other session: a thread that loads `name` into `cache` when `evict_now` is called, and
    returns once that load (and the eviction it asks for) is over."""

    def __init__(self, cache: ModelCache, name: str, options: LoadOptions):
        self.cache, self.name, self.options = cache, name, options
        self._go, self._done = threading.Event(), threading.Event()
        self.calls = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if not self._go.wait(120):
            return
        try:
            self.cache.load(self.name, self.options)
        except BaseException as exc:  # re-raised by the test thread
            self.error = exc
        self._done.set()

    def evict_now(self) -> None:
        """Called mid-use; a second call waits for the same load."""
        self.calls += 1
        self._go.set()
        assert self._done.wait(120), "the evicting thread did not finish its load"
        if self.error is not None:
            raise self.error

    def join(self) -> None:
        self._thread.join(120)


def in_thread(work: Callable[[], Any]) -> Any:
    """work() run in a thread of its own (the user's session); its result, or its exception."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = work()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(300)
    assert not thread.is_alive(), "the user's thread did not finish"
    if "error" in out:
        raise out["error"]
    return out["result"]


def cached(cache: ModelCache, loaded: Any) -> bool:
    return any(m is loaded for m in cache.loaded())
