"""Where billion keeps its files: one data folder (votes, results, runs) and one cache folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS = REPO_ROOT / "assets"


def data_dir() -> Path:
    """Votes, benchmark results and training runs. BILLION_DATA_DIR overrides.

    On a Hugging Face Space with persistent storage, /data survives restarts, so it is preferred.
    """
    env = os.environ.get("BILLION_DATA_DIR")
    if env:
        path = Path(env)
    elif Path("/data").is_dir() and os.access("/data", os.W_OK) and os.environ.get("SPACE_ID"):
        path = Path("/data/billion")
    else:
        path = REPO_ROOT / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Converted weights and other rebuildable files. BILLION_CACHE_DIR overrides."""
    env = os.environ.get("BILLION_CACHE_DIR")
    path = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "billion"
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path(folder: Path | None = None) -> Path:
    """The project's one SQLite store, in the data folder (or `folder`). BILLION_DB overrides."""
    env = os.environ.get("BILLION_DB")
    return Path(env) if env else (folder or data_dir()) / "billion.sqlite3"
