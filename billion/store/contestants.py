"""The store's table of extra arena contestants (trainer adapters, endpoint models) by name."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from typing import Any

from billion.core.errors import BillionError
from billion.store.codec import dumps as _dumps, loads as _loads, now as _now


class ArenaContestantsTable:
    """Store methods for the arena_contestants table (billion.store.store.Store provides _write/_read)."""

    def add_arena_contestant(self, record: Mapping[str, Any], replace: bool = True) -> None:
        """Remember an extra contestant (a contestant dict with a 'name'); the same name replaces it,
        or, with replace=False, is refused."""
        if not record.get("name"):
            raise BillionError("A contestant needs a 'name' (the key ratings use).")
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            with self._write() as con:
                con.execute(f"{verb} INTO arena_contestants (name, created_at, record_json) "
                            "VALUES (?, ?, ?)", (record["name"], _now(), _dumps(dict(record))))
        except sqlite3.IntegrityError:
            raise BillionError(f"The Arena already has a contestant named {record['name']!r}: pick "
                               "another label.") from None

    def arena_contestants(self) -> list[dict[str, Any]]:
        """Extra contestants, oldest first."""
        rows = self._read("SELECT record_json FROM arena_contestants ORDER BY created_at, name")
        return [_loads(r["record_json"]) for r in rows]
