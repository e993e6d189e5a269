"""What a page had on screen, kept server-side so a reload brings it back (issue 14, fix 3).

Keyed by a random token the browser keeps (the UI's `gr.BrowserState`), stored only as its hash:
another browser, with another token, finds nothing. One row per (token, kind), e.g. "chat",
"arena", "trainer"; values are JSON. Everything is capped, since any visitor can write here: the
size of a value, the number of rows (the oldest go first) and their age; files (the trainer's
upload) have a size limit and live in a folder per token under `files_dir`.

Its own SQLite file, apart from the votes store: nothing here is worth a backup or a Hub copy.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from billion.core.errors import BillionError

TOKEN = re.compile(r"[0-9a-f]{32}")
KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
SCHEMA = """
CREATE TABLE IF NOT EXISTS session_state (
    key TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (key, kind));
CREATE INDEX IF NOT EXISTS session_state_updated ON session_state (updated);
"""


@dataclass(frozen=True)
class SessionLimits:
    #: the JSON of one value (a long chat is trimmed by the caller to fit)
    value_bytes: int = 512 * 2**10
    #: rows in all; past it the least recently saved go
    rows: int = 20_000
    #: a value unsaved for this long is gone (a week)
    max_age_s: float = 7 * 86400.0
    #: one kept file (the trainer's upload limit is the UI's business; this is the store's ceiling)
    file_bytes: int = 50 * 2**20


def token_key(token: str) -> str:
    """The row key of a browser token; a malformed token (not 32 hex digits) has none."""
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        raise BillionError("This page has no valid session token: reload the page.")
    return hashlib.sha256(token.encode()).hexdigest()


def _kind(kind: str) -> str:
    if not KIND.fullmatch(kind):
        raise ValueError(f"bad session state kind {kind!r}")
    return kind


class SessionStates:
    """Per-browser state on a SQLite file; thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path | str, files_dir: Path | str, limits: SessionLimits = SessionLimits(),
                 clock=time.time):
        self.path, self.files_dir, self.limits, self._clock = Path(path), Path(files_dir), limits, clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.executescript("PRAGMA journal_mode=WAL;" + SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def save(self, token: str, kind: str, value: Any) -> bool:
        """Keep value for this token; False (nothing kept) when its JSON is over the size limit."""
        text = json.dumps(value, separators=(",", ":"))
        if len(text.encode()) > self.limits.value_bytes:
            return False
        key, now = token_key(token), self._clock()
        with self._lock:
            self._con.execute("INSERT OR REPLACE INTO session_state VALUES (?, ?, ?, ?)",
                              (key, _kind(kind), text, now))
            self._prune(now)
        return True

    def load(self, token: str, kind: str) -> Any | None:
        """The value this token saved under kind, or None (none, expired, or another token)."""
        key = token_key(token)
        with self._lock:
            row = self._con.execute("SELECT value, updated FROM session_state WHERE key=? AND kind=?",
                                    (key, _kind(kind))).fetchone()
        if row is None or self._clock() - row[1] > self.limits.max_age_s:
            return None
        return json.loads(row[0])

    def forget(self, token: str, kind: str) -> None:
        with self._lock:
            self._con.execute("DELETE FROM session_state WHERE key=? AND kind=?",
                              (token_key(token), _kind(kind)))

    def count(self) -> int:
        with self._lock:
            return self._con.execute("SELECT COUNT(*) FROM session_state").fetchone()[0]

    def _prune(self, now: float) -> None:
        """Drop expired rows and the oldest past the row cap, with their files (under the lock)."""
        con, limits = self._con, self.limits
        gone = [r[0] for r in con.execute(
            "SELECT DISTINCT key FROM session_state WHERE updated < ?", (now - limits.max_age_s,))]
        con.execute("DELETE FROM session_state WHERE updated < ?", (now - limits.max_age_s,))
        extra = con.execute("SELECT COUNT(*) FROM session_state").fetchone()[0] - limits.rows
        if extra > 0:
            oldest = con.execute("SELECT key, kind FROM session_state ORDER BY updated LIMIT ?",
                                 (extra,)).fetchall()
            con.executemany("DELETE FROM session_state WHERE key=? AND kind=?", oldest)
            gone += [key for key, _ in oldest]
        for key in set(gone):
            if con.execute("SELECT 1 FROM session_state WHERE key=?", (key,)).fetchone() is None:
                shutil.rmtree(self.files_dir / key, ignore_errors=True)

    # ---- files ----------------------------------------------------------------------------------

    def keep_file(self, token: str, kind: str, source: Path | str) -> Path:
        """A copy of source kept for this token (replacing the one kept before under kind), with
        its file name; its path is saved as the kind's value. Too big: BillionError."""
        source = Path(source)
        size = source.stat().st_size
        if size > self.limits.file_bytes:
            raise BillionError(f"{source.name} is {size / 2**20:.1f} MiB: a reload can bring back files "
                               f"up to {self.limits.file_bytes / 2**20:.0f} MiB; pick it again after one.")
        folder = self.files_dir / token_key(token) / _kind(kind)
        target = folder / source.name
        if source.resolve() != target.resolve():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            shutil.copyfile(source, target)
        self.save(token, kind, {"file": target.name})
        return target

    def kept_file(self, token: str, kind: str) -> Path | None:
        """The file this token kept under kind, if it is still there."""
        value = self.load(token, kind)
        if not isinstance(value, dict) or not isinstance(value.get("file"), str):
            return None
        path = self.files_dir / token_key(token) / _kind(kind) / Path(value["file"]).name
        return path if path.is_file() else None

    def forget_file(self, token: str, kind: str) -> None:
        self.forget(token, kind)
        shutil.rmtree(self.files_dir / token_key(token) / _kind(kind), ignore_errors=True)
