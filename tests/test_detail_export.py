import json
import math

import pandas as pd

from billion.bench.detail_export import detail_rows, write_detail_export


def test_rows_keep_every_column_and_missing_values_become_null(tmp_path):
    board = pd.DataFrame([{"model": "a", "benchmark": "mmlu", "metric": "acc", "score": 41.5,
                           "95% CI": "", "n": float("nan"), "extra": 1}])
    rows = detail_rows(board)
    assert rows == [{"model": "a", "benchmark": "mmlu", "metric": "acc", "score": 41.5, "95% CI": "",
                     "n": None}]
    export = write_detail_export(board, tmp_path / "exports")
    assert export.rows == 1 and export.csv.parent == export.json.parent
    data = json.loads(export.json.read_text())
    assert data["rows"][0]["n"] is None and data["columns"][:3] == ["model", "benchmark", "metric"]
    back = pd.read_csv(export.csv)
    assert back.loc[0, "score"] == 41.5 and math.isnan(back.loc[0, "n"])
