"""Where billion keeps its files: one data folder (votes, results, runs) and one cache folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ASSETS = REPO_ROOT / "assets"


#: where a Space mounts its persistent storage (a paid disk, or a storage bucket)
SPACE_STORAGE = Path("/data")
# File systems that are object storage or network shares: SQLite's locks and fsync are not trusted
# there (hf-mount serves buckets over NFS or FUSE).
_REMOTE_FS = ("fuse", "nfs", "nfs4", "cifs", "smb3", "9p", "ceph", "s3fs", "gcsfuse", "virtiofs")


def on_space() -> bool:
    """Running as a Hugging Face Space (the platform sets SPACE_ID)."""
    return bool(os.environ.get("SPACE_ID"))


def mount_kind(path: Path, mounts: str | None = None) -> str:
    """"disk" or "bucket" (object storage or a network share) for the file system holding path:
    env BILLION_DATA_MOUNT when set, else the type /proc/mounts gives its mount point."""
    forced = os.environ.get("BILLION_DATA_MOUNT", "").strip().lower()
    if forced in ("disk", "bucket"):
        return forced
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return "disk"
    target, best, kind = os.path.realpath(path), "", "disk"
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, fields[2]
            kind = "bucket" if fstype.split(".")[0] in _REMOTE_FS else "disk"
    return kind


def space_storage() -> str | None:
    """"disk" or "bucket" when this is a Space with writable persistent storage at /data, else None."""
    if not (on_space() and SPACE_STORAGE.is_dir() and os.access(SPACE_STORAGE, os.W_OK)):
        return None
    return mount_kind(SPACE_STORAGE)


def data_dir() -> Path:
    """Votes, benchmark results and training runs. BILLION_DATA_DIR overrides.

    On a Space whose /data is a persistent disk, /data/billion (it survives restarts). When /data
    is a storage bucket, the store stays on local disk and is copied there (backup_dir).
    """
    env = os.environ.get("BILLION_DATA_DIR")
    if env:
        path = Path(env)
    elif space_storage() == "disk":
        path = SPACE_STORAGE / "billion"
    else:
        path = REPO_ROOT / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def backup_dir() -> Path | None:
    """Where the store's file is copied: /data/billion on a Space whose /data is a bucket, else None."""
    return SPACE_STORAGE / "billion" if space_storage() == "bucket" else None


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
