"""The Leaderboard's long table (one row per model, benchmark and metric) as CSV and JSON files.

The model × benchmark view keeps one headline figure per cell; this export keeps every column of
every row (setting, CI, n, source, date), so a spreadsheet or a notebook can redo the comparison.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from billion.bench.leaderboard import COLUMNS

#: exports older than this are removed when a new one is written (the folder is served)
MAX_AGE_S = 3600.0
PREFIX = "leaderboard-"


@dataclass(frozen=True)
class DetailExport:
    csv: Path
    json: Path
    rows: int


def _plain(value: Any) -> Any:
    """JSON-safe cells: NaN and missing values become null, numpy numbers plain numbers."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
        return None if isinstance(value, float) and math.isnan(value) else value
    return value


def detail_rows(board: pd.DataFrame) -> list[dict[str, Any]]:
    """Every row of the leaderboard, every column, in the table's order."""
    columns = [c for c in COLUMNS if c in board.columns]
    return [{c: _plain(row[c]) for c in columns} for _, row in board.iterrows()]


def _prune(root: Path, max_age_s: float) -> None:
    cutoff = time.time() - max_age_s
    for folder in root.glob(f"{PREFIX}*"):
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def write_detail_export(board: pd.DataFrame, root: Path) -> DetailExport:
    """leaderboard.csv and leaderboard.json in a fresh folder under root (the exports folder)."""
    root.mkdir(parents=True, exist_ok=True)
    _prune(root, MAX_AGE_S)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    rows = detail_rows(board)
    columns = [c for c in COLUMNS if c in board.columns]
    csv_path, json_path = folder / "leaderboard.csv", folder / "leaderboard.json"
    pd.DataFrame(rows, columns=columns).to_csv(csv_path, index=False)
    json_path.write_text(json.dumps({"columns": columns, "rows": rows}, indent=1, default=str))
    return DetailExport(csv_path, json_path, len(rows))
