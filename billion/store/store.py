"""The project's one SQLite store: arena battles and votes, benchmark results, training runs.

A real file (the app's is `Settings.db_path`, env BILLION_DB) in WAL mode with `synchronous=FULL`,
so a vote whose call returned survives a crash or SIGKILL. One connection per Store, behind a lock:
Gradio runs handlers in threads. The schema is versioned: MIGRATIONS
(billion.store.schema) is an ordered list and a new version only ever appends to it.
"""

from __future__ import annotations

import csv
import sqlite3
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from billion.core.errors import BillionError
from billion.store.codec import dumps as _dumps, loads as _loads, now as _now
from billion.store.schema import MIGRATIONS, POSITIONS, SCHEMA_VERSION, WINNERS
from billion.store.bench_results import BenchResultsTable
from billion.store.contestants import ArenaContestantsTable
from billion.store.training_runs import TrainingRunsTable

__all__ = ["POSITIONS", "SCHEMA_VERSION", "WINNERS", "Store", "VoteHook"]

#: called with each voted battle's record once its vote is stored (e.g. to copy it elsewhere)
VoteHook = Callable[[dict[str, Any]], None]



class Store(TrainingRunsTable, BenchResultsTable, ArenaContestantsTable):
    """One SQLite file. All methods are thread-safe; writes are single transactions."""

    def __init__(self, path: Path | str, on_vote: VoteHook | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.on_vote = on_vote
        try:
            self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                        timeout=30.0)
            mode = self._con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        except sqlite3.Error as exc:
            raise BillionError(f"Cannot open the store at {self.path} ({exc}): set BILLION_DB to "
                               "a writable file on local disk.") from exc
        for file in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:  # owner only (unvoted battles); SQLite gives new -wal and -shm files this mode too
                file.chmod(0o600)
            except OSError:
                pass
        if mode.lower() != "wal":
            raise BillionError(f"The store at {self.path} cannot use WAL mode (got {mode}): put "
                               "BILLION_DB on a local disk, not a network share.")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.execute("PRAGMA foreign_keys=ON")
        self._con.row_factory = sqlite3.Row
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front (no upgrade races)."""
        with self._lock:
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    yield self._con
                    self._con.execute("COMMIT")
                except BaseException:
                    if self._con.in_transaction:
                        self._rollback()
                    raise
            except sqlite3.OperationalError as exc:  # a full disk, an I/O error, a read-only file
                raise BillionError(f"Could not save to the store at {self.path} ({exc}); nothing of this "
                                   "request was saved. Free disk space there (or make it writable), then "
                                   "send it again.") from exc

    def _rollback(self) -> None:
        try:
            self._con.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite has rolled back already where the write itself failed
            pass

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self._write() as con:
            con.execute("CREATE TABLE IF NOT EXISTS schema_version "
                        "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            current = con.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise BillionError(f"The store at {self.path} has schema v{current}, newer than this "
                                   f"billion (v{SCHEMA_VERSION}): upgrade billion or set BILLION_DB.")
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version - 1]:
                    con.execute(statement)
                con.execute("INSERT INTO schema_version VALUES (?, ?)", (version, _now()))

    def backup_to(self, path: Path | str) -> None:
        """A consistent copy of the whole store in one new SQLite file (SQLite's backup API)."""
        target = sqlite3.connect(path)
        try:
            with self._lock:
                self._con.backup(target)
        finally:
            target.close()

    @property
    def changes(self) -> int:
        """Rows written through this store since it opened: a cheap 'anything new?' counter."""
        with self._lock:
            return self._con.total_changes

    @property
    def schema_version(self) -> int:
        return self._read("SELECT MAX(version) FROM schema_version")[0][0]

    # ---- battles -------------------------------------------------------------------------------

    def create_battle(self, *, model_a: Mapping[str, Any], model_b: Mapping[str, Any], position: str,
                      sampling: Mapping[str, Any], seed: int | None, session_id: str,
                      live_streaming: bool = False, battle_id: str | None = None) -> str:
        """Store a new battle; model_a / model_b are contestant dicts with at least a 'name'.

        position says where model_a sat: 'left' or 'right'. Returns the battle id.
        """
        if position not in POSITIONS:
            raise BillionError(f"position must be one of {POSITIONS} (got {position!r}).")
        for contestant in (model_a, model_b):
            if not contestant.get("name"):
                raise BillionError("Each contestant needs a 'name' (the key ratings use).")
        battle_id = battle_id or uuid.uuid4().hex
        with self._write() as con:
            con.execute(
                "INSERT INTO battles (id, created_at, session_id, model_a, model_b, model_a_json, "
                "model_b_json, position, sampling_json, seed, live_streaming) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (battle_id, _now(), session_id, model_a["name"], model_b["name"], _dumps(dict(model_a)),
                 _dumps(dict(model_b)), position, _dumps(dict(sampling)), seed, int(live_streaming)))
        return battle_id

    def _open_battle(self, con: sqlite3.Connection, battle_id: str) -> None:
        row = con.execute("SELECT vote FROM battles WHERE id = ?", (battle_id,)).fetchone()
        if row is None:
            raise BillionError(f"No battle with id {battle_id!r}: start a new round.")
        if row["vote"] is not None:
            raise BillionError("This battle already has its vote; start a new round to ask more.")

    def begin_turn(self, battle_id: str, idx: int, prompt: str) -> None:
        """Record a prompt whose answers are being written; asking turn idx again drops it and later ones."""
        with self._write() as con:
            self._begin_turn(con, battle_id, idx, prompt)

    def finish_turn(self, battle_id: str, idx: int, answer_a: str, answer_b: str,
                    stats: Mapping[str, Any] | None = None) -> None:
        """Store both answers of turn idx (answer_a is model_a's, whichever side it sat on)."""
        with self._write() as con:
            self._finish_turn(con, battle_id, idx, answer_a, answer_b, stats)

    def add_turn(self, battle_id: str, idx: int, prompt: str, answer_a: str, answer_b: str,
                 stats: Mapping[str, Any] | None = None) -> None:
        """A whole turn at once (prompt and both answers), as one transaction."""
        with self._write() as con:
            self._begin_turn(con, battle_id, idx, prompt)
            self._finish_turn(con, battle_id, idx, answer_a, answer_b, stats)

    def _begin_turn(self, con: sqlite3.Connection, battle_id: str, idx: int, prompt: str) -> None:
        self._open_battle(con, battle_id)
        before = con.execute("SELECT COUNT(*) FROM turns WHERE battle_id = ? AND idx < ?",
                             (battle_id, idx)).fetchone()[0]
        if idx < 0 or before != idx:
            raise BillionError(f"Turn {idx} of battle {battle_id!r} must follow turns 0..{idx - 1}.")
        con.execute("DELETE FROM turns WHERE battle_id = ? AND idx >= ?", (battle_id, idx))
        con.execute("INSERT INTO turns (battle_id, idx, prompt, created_at) VALUES (?, ?, ?, ?)",
                    (battle_id, idx, prompt, _now()))

    def _finish_turn(self, con: sqlite3.Connection, battle_id: str, idx: int, answer_a: str,
                     answer_b: str, stats: Mapping[str, Any] | None) -> None:
        self._open_battle(con, battle_id)
        cur = con.execute(
            "UPDATE turns SET answer_a = ?, answer_b = ?, stats_json = ? WHERE battle_id = ? AND idx = ?",
            (answer_a, answer_b, None if stats is None else _dumps(dict(stats)), battle_id, idx))
        if cur.rowcount != 1:
            raise BillionError(f"Battle {battle_id!r} has no turn {idx}: call begin_turn first.")

    def flag_battle(self, battle_id: str, reason: str) -> None:
        """Mark an identity leak: the vote is kept but ratings leave it out."""
        with self._write() as con:
            cur = con.execute("UPDATE battles SET leak_flag = 1, leak_reason = ? WHERE id = ?",
                              (reason, battle_id))
            if cur.rowcount != 1:
                raise BillionError(f"No battle with id {battle_id!r}: start a new round.")

    def record_vote(self, battle_id: str, winner: str) -> str:
        """Store the one vote of a battle; returns voted_at. Durable once this returns.

        Raises BillionError for an unknown id, a second vote, or answers still being written;
        the conditional UPDATE makes two racing votes impossible to both succeed.
        """
        if winner not in WINNERS:
            raise BillionError(f"A vote must be one of {WINNERS} (got {winner!r}).")
        voted_at = _now()
        with self._write() as con:
            cur = con.execute(
                "UPDATE battles SET vote = ?, voted_at = ? WHERE id = ? AND vote IS NULL "
                "AND EXISTS (SELECT 1 FROM turns WHERE battle_id = ?) "
                "AND NOT EXISTS (SELECT 1 FROM turns WHERE battle_id = ? "
                "AND (answer_a IS NULL OR answer_b IS NULL))",
                (winner, voted_at, battle_id, battle_id, battle_id))
            if cur.rowcount != 1:
                self._open_battle(con, battle_id)
                raise BillionError("Both answers must be complete before voting: wait for them.")
        if self.on_vote is not None:
            try:
                self.on_vote(self.battle_record(battle_id))
            except Exception as exc:  # the vote is already stored; a copy that fails must not undo it
                warnings.warn(f"Battle {battle_id} is stored, but passing its vote on failed: {exc}")
        return voted_at

    def discard_battle(self, battle_id: str) -> bool:
        """Delete a battle that has no vote, with its turns (an answer failed: the battle never
        counts). A voted battle is never deleted. Returns whether one was deleted."""
        with self._write() as con:
            con.execute("DELETE FROM turns WHERE battle_id = ? AND battle_id IN "
                        "(SELECT id FROM battles WHERE vote IS NULL)", (battle_id,))
            cur = con.execute("DELETE FROM battles WHERE id = ? AND vote IS NULL", (battle_id,))
            return cur.rowcount == 1

    def import_battles(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add voted battles as battle_record() writes them (e.g. from a copy of the votes) that
        the store does not hold yet; a battle id already here is left as it is, so importing the
        same records twice adds nothing. Returns how many were added."""
        added = 0
        with self._write() as con:
            for record in records:
                if not record.get("winner") or record["winner"] not in WINNERS:
                    continue  # only voted battles are ever copied; anything else is not a vote
                cur = con.execute(
                    "INSERT OR IGNORE INTO battles (id, created_at, session_id, model_a, model_b, "
                    "model_a_json, model_b_json, position, sampling_json, seed, live_streaming, vote, "
                    "voted_at, leak_flag, leak_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record["id"], record["created_at"], record.get("session_id") or "", record["model_a"],
                     record["model_b"], _dumps(record.get("contestant_a") or {"name": record["model_a"]}),
                     _dumps(record.get("contestant_b") or {"name": record["model_b"]}),
                     record["position"], _dumps(record.get("sampling") or {}), record.get("seed"),
                     int(bool(record.get("live_streaming"))), record["winner"], record["voted_at"],
                     int(bool(record.get("flagged"))), record.get("leak_reason")))
                if cur.rowcount != 1:
                    continue
                added += 1
                for turn in record.get("turns") or ():
                    con.execute("INSERT INTO turns (battle_id, idx, prompt, answer_a, answer_b, stats_json, "
                                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (record["id"], turn["idx"], turn["prompt"], turn.get("answer_a"),
                                 turn.get("answer_b"), None if turn.get("stats") is None
                                 else _dumps(turn["stats"]), record["created_at"]))
        return added

    def battle_ids(self, voted_only: bool = True) -> set[str]:
        """Ids of every (voted) battle."""
        where = " WHERE vote IS NOT NULL" if voted_only else ""
        return {row[0] for row in self._read(f"SELECT id FROM battles{where}")}

    def battle_record(self, battle_id: str) -> dict[str, Any]:
        """One battle with its contestants, settings and turns, as plain JSON-ready data."""
        records = self._battle_records("WHERE b.id = ?", (battle_id,))
        if not records:
            raise BillionError(f"No battle with id {battle_id!r}.")
        return records[0]

    def _battle_records(self, where: str = "", params: tuple = ()) -> list[dict[str, Any]]:
        with self._lock:
            battles = self._con.execute(
                f"SELECT * FROM battles b {where} "
                "ORDER BY b.voted_at IS NULL, b.voted_at, b.created_at", params).fetchall()
            turns = self._con.execute(
                f"SELECT t.* FROM turns t JOIN battles b ON b.id = t.battle_id {where} "
                "ORDER BY t.battle_id, t.idx", params).fetchall()
        by_battle: dict[str, list[dict[str, Any]]] = {}
        for t in turns:
            by_battle.setdefault(t["battle_id"], []).append(
                {"idx": t["idx"], "prompt": t["prompt"], "answer_a": t["answer_a"],
                 "answer_b": t["answer_b"], "stats": _loads(t["stats_json"])})
        return [
            {"id": b["id"], "created_at": b["created_at"], "session_id": b["session_id"],
             "model_a": b["model_a"], "model_b": b["model_b"],
             "contestant_a": _loads(b["model_a_json"]), "contestant_b": _loads(b["model_b_json"]),
             "position": b["position"], "sampling": _loads(b["sampling_json"]), "seed": b["seed"],
             "live_streaming": bool(b["live_streaming"]), "winner": b["vote"],
             "voted_at": b["voted_at"], "flagged": bool(b["leak_flag"]),
             "leak_reason": b["leak_reason"], "turns": by_battle.get(b["id"], [])}
            for b in battles
        ]

    def battles_frame(self, voted_only: bool = False) -> pd.DataFrame:
        """One row per battle in vote order; model_a, model_b, winner, flagged feed billion.arena.ratings."""
        records = self._battle_records("WHERE b.vote IS NOT NULL" if voted_only else "")
        columns = ["id", "created_at", "session_id", "model_a", "model_b", "contestant_a",
                   "contestant_b", "position", "sampling", "seed", "live_streaming", "winner",
                   "voted_at", "flagged", "leak_reason", "turns"]
        frame = pd.DataFrame(records, columns=columns)
        return frame.assign(n_turns=frame["turns"].map(len)) if len(frame) else frame.assign(n_turns=[])

    def vote_fingerprint(self) -> tuple:
        """Changes whenever a vote or a leak flag is stored: a cheap key for cached ratings."""
        row = self._read("SELECT COUNT(*), MAX(voted_at), SUM(leak_flag) FROM battles "
                         "WHERE vote IS NOT NULL")[0]
        return tuple(row)

    def export_jsonl(self, path: Path | str, voted_only: bool = False) -> int:
        """Every battle (or every voted one), one JSON object per line; returns the count."""
        records = self._battle_records("WHERE b.vote IS NOT NULL" if voted_only else "")
        with Path(path).open("w", encoding="utf-8") as fh:
            for record in records:
                fh.write(_dumps(record) + "\n")
        return len(records)

    def export_csv(self, path: Path | str, voted_only: bool = False) -> int:
        """Every battle (or every voted one), one row each; nested fields as JSON text."""
        records = self._battle_records("WHERE b.vote IS NOT NULL" if voted_only else "")
        columns = list(records[0]) if records else ["id"]
        with Path(path).open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for record in records:
                writer.writerow({k: _dumps(v) if isinstance(v, (dict, list)) else v
                                 for k, v in record.items()})
        return len(records)
