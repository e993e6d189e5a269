"""The store's table of training runs (a mirror of the run folders, which stay the source of truth)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from billion.core.errors import BillionError
from billion.store.codec import dumps as _dumps, loads as _loads, now as _now


class TrainingRunsTable:
    """Store methods for the training_runs table (billion.store.store.Store provides _write/_read)."""

    def upsert_training_run(self, run_id: str, *, base_model: str | None = None,
                            config: Mapping[str, Any] | None = None, data_hash: str | None = None,
                            status: str | None = None, output_dir: str | None = None,
                            results: Mapping[str, Any] | None = None) -> None:
        """Create a run (base_model and config required) or update the fields given."""
        now = _now()
        with self._write() as con:
            exists = con.execute("SELECT 1 FROM training_runs WHERE id = ?", (run_id,)).fetchone()
            if exists is None:
                if base_model is None or config is None:
                    raise BillionError(f"New training run {run_id!r} needs base_model and config.")
                con.execute(
                    "INSERT INTO training_runs (id, created_at, updated_at, base_model, config_json, "
                    "data_hash, status, output_dir, results_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, now, now, base_model, _dumps(dict(config)), data_hash, status or "created",
                     output_dir, None if results is None else _dumps(dict(results))))
                return
            updates = {"base_model": base_model, "data_hash": data_hash, "status": status,
                       "output_dir": output_dir,
                       "config_json": None if config is None else _dumps(dict(config)),
                       "results_json": None if results is None else _dumps(dict(results))}
            given = {k: v for k, v in updates.items() if v is not None}
            assignments = ", ".join(f"{k} = ?" for k in given)
            con.execute(f"UPDATE training_runs SET {assignments + ', ' if given else ''}updated_at = ? "
                        "WHERE id = ?", (*given.values(), now, run_id))

    def training_runs_frame(self) -> pd.DataFrame:
        """All training runs, newest first, JSON columns decoded."""
        rows = self._read("SELECT * FROM training_runs ORDER BY created_at DESC")
        frame = pd.DataFrame([dict(r) for r in rows], columns=[
            "id", "created_at", "updated_at", "base_model", "config_json", "data_hash", "status",
            "output_dir", "results_json"])
        for col in ("config", "results"):
            frame[col] = frame.pop(f"{col}_json").map(_loads)
        return frame

    def delete_training_run(self, run_id: str) -> None:
        """Forget a run (its folder was discarded)."""
        with self._write() as con:
            con.execute("DELETE FROM training_runs WHERE id = ?", (run_id,))
