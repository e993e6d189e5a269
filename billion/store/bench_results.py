"""The store's benchmark results: an insert-only history, every score with its settings and machine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from billion.core.machine import describe_machine, library_versions
from billion.store.codec import dumps as _dumps, loads as _loads, now as _now


class BenchResultsTable:
    """Store methods for the bench_results table (billion.store.store.Store provides _write/_read)."""

    def add_bench_result(self, *, model: str, task: str, metric: str, score: float,
                         revision: str | None = None, settings: Mapping[str, Any] | None = None,
                         stderr: float | None = None, n: int | None = None,
                         machine: str | None = None, versions: Mapping[str, str] | None = None,
                         extra: Mapping[str, Any] | None = None) -> int:
        """Append one measured score; returns its id. Results are never overwritten."""
        with self._write() as con:
            cur = con.execute(
                "INSERT INTO bench_results (created_at, model, revision, task, settings_json, metric, "
                "score, stderr, n, machine, library_versions_json, extra_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_now(), model, revision, task, _dumps(dict(settings or {})), metric, float(score),
                 None if stderr is None else float(stderr), n, machine or describe_machine(),
                 _dumps(dict(versions) if versions is not None else library_versions()),
                 _dumps(dict(extra or {}))))
            return int(cur.lastrowid)

    def bench_results_frame(self, model: str | None = None, task: str | None = None) -> pd.DataFrame:
        """Benchmark history, oldest first, JSON columns decoded; optionally for one model / task."""
        rows = self._read(
            "SELECT * FROM bench_results WHERE (? IS NULL OR model = ?) AND (? IS NULL OR task = ?) "
            "ORDER BY id", (model, model, task, task))
        frame = pd.DataFrame([dict(r) for r in rows], columns=[
            "id", "created_at", "model", "revision", "task", "settings_json", "metric", "score",
            "stderr", "n", "machine", "library_versions_json", "extra_json"])
        for col in ("settings", "library_versions", "extra"):
            frame[col] = frame.pop(f"{col}_json").map(_loads)
        return frame
