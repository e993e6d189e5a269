"""A copy of the store's SQLite file in another folder, for a Space whose /data is a storage bucket.

A bucket is object storage: SQLite's locking and fsync cannot be trusted there, so the store runs
on local disk and `StoreBackup` copies it into the folder every few minutes (SQLite's backup API
gives a consistent snapshot; the copy is written under a temporary name and renamed). At start-up
`restore_file` puts the last copy back when the local store does not exist yet.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from billion.store.store import Store

log = logging.getLogger(__name__)


def backup_path(folder: Path, db_path: Path) -> Path:
    return folder / db_path.name


def restore_file(db_path: Path, folder: Path) -> bool:
    """Copy the backup of db_path from folder into place when there is no local store yet."""
    source = backup_path(folder, db_path)
    if db_path.exists() or not source.is_file():
        return False
    db_path.parent.mkdir(parents=True, exist_ok=True)
    partial = db_path.with_name(db_path.name + ".restoring")
    shutil.copyfile(source, partial)
    os.replace(partial, db_path)
    log.info("store restored from %s", source)
    return True


class StoreBackup:
    """Copies the store into a folder every `every_minutes` when it changed, and once at close."""

    def __init__(self, store: Store, folder: Path, every_minutes: float = 5.0):
        self.store, self.folder, self.every_s = store, Path(folder), max(every_minutes, 0.01) * 60
        self._copied = -1
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="billion-store-backup", daemon=True)
        self._thread.start()

    @property
    def target(self) -> Path:
        return backup_path(self.folder, self.store.path)

    def backup_now(self) -> bool:
        """Copy the store if it changed since the last copy; returns whether it copied."""
        with self._lock:
            changes = self.store.changes
            if changes == self._copied:
                return False
            self.folder.mkdir(parents=True, exist_ok=True)
            # Snapshot on local disk first: the backup API pages through the file, which on a
            # bucket mount would be many small remote writes.
            with tempfile.TemporaryDirectory(prefix="billion-backup-") as scratch:
                snapshot = Path(scratch) / self.store.path.name
                self.store.backup_to(snapshot)
                partial = self.target.with_name(self.target.name + ".partial")
                shutil.copyfile(snapshot, partial)
                os.replace(partial, self.target)
            self._copied = changes
            return True

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.backup_now()
            except Exception as exc:  # a full or unmounted bucket: keep serving, say so
                log.warning("store backup to %s failed: %s", self.folder, exc)

    def close(self) -> None:
        """Stop the timer and make a last copy (the store must still be open)."""
        self._stop.set()
        self._thread.join(timeout=5)
        try:
            self.backup_now()
        except Exception as exc:
            log.warning("last store backup to %s failed: %s", self.folder, exc)
