"""The application context: the shared things one running app (or one CLI command) works with.

`build_context(settings)` makes them once, from the settings: the store (with the arena's Hub copy
of votes on its on-vote hook), the model cache, the training runs and the hub probe. app.py hands
the context to every `build_*_tab(ctx)`, the CLI to every command; nothing in billion creates any
of these at import time, so a test builds its own context on a temporary folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from billion.arena.hub_sync import HubSync, start_hub_sync
from billion.core.availability import HubProbe
from billion.core.limits import Limits
from billion.core.model_cache import ModelCache
from billion.core.settings import Settings
from billion.store.store import Store
from billion.core.download_jobs import DownloadRegistry
from billion.train.manager import RunManager


@dataclass(frozen=True, eq=False)
class AppContext:
    settings: Settings
    #: votes, benchmark results, training runs, extra arena contestants
    store: Store
    #: loaded models within the settings' memory budget
    models: ModelCache
    #: training runs (folders under settings.runs_dir), each trained in a process of its own
    runs: RunManager
    #: whether the hub answers, asked at most every few minutes
    hub: HubProbe
    #: the Hub copy of voted battles, when settings.hub_dataset and HF_TOKEN are set
    hub_sync: HubSync | None = None

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    @property
    def downloads(self) -> DownloadRegistry:
        """Hub downloads under way, one per model, which every session joins (the model cache's)."""
        return self.models.downloads

    def close(self) -> None:
        """Stop this context's training processes, close the store and drop loaded models (the end
        of a test or a command)."""
        if self.hub_sync is not None:
            self.hub_sync.scheduler.stop()  # what is queued is pushed at the next start
        self.runs.close()
        self.models.clear()
        self.store.close()


def build_context(settings: Settings | None = None, models: ModelCache | None = None) -> AppContext:
    """Everything an app needs, from settings (default: Settings.from_env()).

    models: a model cache to share (tests share one across contexts); default a new one.
    """
    settings = settings or Settings.from_env()
    sync = start_hub_sync(settings.hub_dataset, settings.hub_sync_dir) if settings.hub_dataset else None
    store = Store(settings.db_path, on_vote=sync.append if sync is not None else None)
    models = models if models is not None else ModelCache(settings.model_budget_bytes)
    runs = RunManager(settings.runs_dir, store=store, models=models, limits=settings.limits,
                      checkpoint_s=settings.train_checkpoint_s)
    runs.recover()  # runs whose process ended with an earlier app become "interrupted"
    return AppContext(settings=settings, store=store, models=models, runs=runs, hub=HubProbe(),
                      hub_sync=sync)
