"""The app's settings: where its files live, how much memory models may take, and its limits.

Read from the environment once, by `Settings.from_env()`, when app.py or the CLI starts; everything
else receives them (through billion.context.AppContext) and reads no environment variable itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from billion.core.limits import Limits
from billion.core.paths import backup_dir, data_dir, db_path, on_space


def default_model_budget() -> int:
    """Bytes of model weights kept loaded at once: env BILLION_MODEL_BUDGET_GB, else half the RAM."""
    env = os.environ.get("BILLION_MODEL_BUDGET_GB")
    if env:
        return int(float(env) * 2**30)
    import psutil

    return int(psutil.virtual_memory().total * 0.5)


def _page_endpoints_from_env() -> bool:
    default = "off" if os.environ.get("SPACE_ID") else "on"
    value = os.environ.get("BILLION_PAGE_ENDPOINTS", default).strip().lower()
    return value not in ("0", "off", "false", "no")


@dataclass(frozen=True)
class Settings:
    """Everything about this installation that the engine needs to know."""

    #: votes, benchmark results, training runs, exports (env BILLION_DATA_DIR)
    data_dir: Path
    #: the SQLite store (env BILLION_DB, default data_dir/billion.sqlite3)
    db_path: Path
    #: bytes of model weights the model cache keeps loaded (env BILLION_MODEL_BUDGET_GB)
    model_budget_bytes: int
    #: Hugging Face dataset repo that voted battles are copied to (env BILLION_HUB_DATASET), or an
    #: absolute folder standing in for one; None = off. A new store is restored from it at start-up.
    hub_dataset: str | None = None
    #: minutes between two uploads of the votes copy (env BILLION_HUB_SYNC_MINUTES)
    hub_sync_minutes: float = 5.0
    #: folder the SQLite file is copied to every hub_sync_minutes (env BILLION_BACKUP_DIR); by
    #: default /data/billion on a Space whose /data is a storage bucket (object storage, where
    #: SQLite's locking and fsync cannot be trusted: the store itself stays on local disk)
    backup_dir: Path | None = None
    #: whether any visitor may export voted battles (env BILLION_PUBLIC_VOTES=1/0); by default
    #: off on a Hugging Face Space (SPACE_ID set) and on elsewhere
    votes_public: bool = True
    #: requests the app serves at once (env BILLION_CONCURRENCY)
    concurrency: int = 2
    #: a training run saves a checkpoint this often (seconds), so a killed run resumes from there
    #: (env BILLION_TRAIN_CHECKPOINT_S)
    train_checkpoint_s: float = 60.0
    #: env BILLION_LIMIT_<FIELD> overrides one (see billion.core.limits)
    limits: Limits = field(default_factory=Limits)
    #: models.yaml of endpoint models (env BILLION_MODELS_FILE); None = none (docs/deploy.md)
    models_file: Path | None = None
    #: visitors may add endpoint models on the page (env BILLION_PAGE_ENDPOINTS=on/off; off by
    #: default on a Space, where a form that makes the server call any address is an open door)
    page_endpoints: bool = True

    @property
    def runs_dir(self) -> Path:
        """One folder per training run."""
        return self.data_dir / "runs"

    @property
    def exports_dir(self) -> Path:
        """The only folder the web server hands files out of (the rest holds unrevealed battles)."""
        return self.data_dir / "exports"

    @property
    def hub_sync_dir(self) -> Path:
        return self.data_dir / "hub_sync"

    @classmethod
    def from_env(cls, **changes: Any) -> Settings:
        """Settings from the environment (see each field), with `changes` applied on top."""
        folder = Path(changes.pop("data_dir")) if "data_dir" in changes else data_dir()
        backup = os.environ.get("BILLION_BACKUP_DIR")
        values: dict[str, Any] = {
            "data_dir": folder, "db_path": db_path(folder), "model_budget_bytes": default_model_budget(),
            "hub_dataset": os.environ.get("BILLION_HUB_DATASET") or None,
            "hub_sync_minutes": float(os.environ.get("BILLION_HUB_SYNC_MINUTES", "5")),
            "backup_dir": Path(backup) if backup else backup_dir(),
            "votes_public": _flag(os.environ.get("BILLION_PUBLIC_VOTES"), default=not on_space()),
            "concurrency": int(os.environ.get("BILLION_CONCURRENCY", "2")),
            "train_checkpoint_s": float(os.environ.get("BILLION_TRAIN_CHECKPOINT_S", "60")),
            "limits": Limits.from_env(),
            "models_file": Path(os.environ["BILLION_MODELS_FILE"]).expanduser()
            if os.environ.get("BILLION_MODELS_FILE", "").strip() else None,
            "page_endpoints": _page_endpoints_from_env(), **changes}
        return cls(**values)

    @classmethod
    def in_folder(cls, folder: Path | str, **changes: Any) -> Settings:
        """Data and store under one folder and no hub copy (tests, scripts); the rest from the env."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return cls.from_env(**{"data_dir": folder, "db_path": folder / "billion.sqlite3",
                               "hub_dataset": None, "backup_dir": None, **changes})


def _flag(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")
