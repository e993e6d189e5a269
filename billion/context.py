"""The application context: the shared things one running app (or one CLI command) works with.

`build_context(settings)` makes them once, from the settings: the store (restored from the copy of
the votes when it is new, with that copy on its on-vote hook), the model cache, the training runs
and the hub probe. app.py hands the context to every `build_*_tab(ctx)`, the CLI to every command;
nothing in billion creates any of these at import time, so a test builds its own context on a
temporary folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from billion.arena.hub_sync import VoteCopy, durability_note, restore_votes, start_vote_copy
from billion.core.availability import HubProbe
from billion.core.limits import Limits
from billion.core.model_cache import ModelCache
from billion.core.paths import on_space, space_storage
from billion.core.settings import Settings
from billion.store.backup import StoreBackup, restore_file
from billion.store.session_state import SessionStates
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
    #: the copy of voted battles (a Hub dataset, or a folder standing in for one), when set
    hub_sync: VoteCopy | None = None
    #: the copy of the store's file in settings.backup_dir, when set
    backup: StoreBackup | None = None
    #: voted battles restored from hub_sync when this context opened a store without votes
    restored_votes: int = 0
    #: what each browser had on screen (chat, open battle, trainer form), for a reload
    sessions: SessionStates | None = None

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    @property
    def downloads(self) -> DownloadRegistry:
        """Hub downloads under way, one per model, which every session joins (the model cache's)."""
        return self.models.downloads

    @property
    def durability(self) -> str:
        """Where the votes live and what survives a restart, in one sentence for the page."""
        persistent = space_storage() == "disk" and self.store.path.is_relative_to("/data")
        return durability_note(on_space=on_space(), store_path=self.store.path, persistent=persistent,
                               copy=self.hub_sync, backup=self.settings.backup_dir,
                               backup_minutes=self.settings.hub_sync_minutes)

    def close(self) -> None:
        """Stop this context's training processes, close the store and drop loaded models (the end
        of a test or a command)."""
        if self.hub_sync is not None:
            self.hub_sync.close()
        self.runs.close()
        if self.backup is not None:
            self.backup.close()  # a last copy, while the store is still open
        self.models.clear()
        self.store.close()
        if self.sessions is not None:
            self.sessions.close()


def build_context(settings: Settings | None = None, models: ModelCache | None = None) -> AppContext:
    """Everything an app needs, from settings (default: Settings.from_env()).

    models: a model cache to share (tests share one across contexts); default a new one.
    """
    settings = settings or Settings.from_env()
    if settings.backup_dir is not None:
        restore_file(settings.db_path, settings.backup_dir)
    copy = start_vote_copy(settings.hub_dataset, settings.hub_sync_dir,
                           every_minutes=settings.hub_sync_minutes)
    store = Store(settings.db_path, on_vote=copy.append if copy is not None else None)
    restored = restore_votes(store, copy) if copy is not None and not store.battle_ids() else 0
    backup = StoreBackup(store, settings.backup_dir, settings.hub_sync_minutes) \
        if settings.backup_dir is not None else None
    models = models if models is not None else ModelCache(settings.model_budget_bytes)
    runs = RunManager(settings.runs_dir, store=store, models=models, limits=settings.limits,
                      checkpoint_s=settings.train_checkpoint_s)
    runs.recover()  # runs whose process ended with an earlier app become "interrupted"
    return AppContext(settings=settings, store=store, models=models, runs=runs, hub=HubProbe(),
                      hub_sync=copy, backup=backup, restored_votes=restored,
                      sessions=SessionStates(settings.data_dir / "sessions.sqlite3",
                                             settings.data_dir / "sessions"))
