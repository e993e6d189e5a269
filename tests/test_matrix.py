"""The Leaderboard's model × benchmark view over a real store and the real registry."""

from __future__ import annotations

import pytest

from billion.bench.leaderboard import build_leaderboard
from billion.bench.matrix import model_matrix
from billion.core.registry import MODELS
from billion.store.store import Store
from test_leaderboard import add_mc, add_speed


@pytest.fixture()
def store(tmp_path):
    s = Store(tmp_path / "m.sqlite3")
    yield s
    s.close()


def test_one_row_per_variant_one_column_per_benchmark_with_average(store):
    add_mc(store, "smollm2-135m", 0.40, n=200, limit=None)
    add_mc(store, "smollm2-135m", 0.30, n=200, limit=None, quantization="int4")
    add_speed(store, "smollm2-135m", 40.0, 900 * 2**20)
    board = build_leaderboard(store.bench_results_frame(), MODELS)
    matrix = model_matrix(board)
    smol = matrix[matrix["model"] == "smollm2-135m"].set_index("precision")
    assert set(smol.index) == {"fp32", "fp32, int4", "as published"}
    assert smol.at["fp32", "billion-mc"].startswith("40.0 [") and smol.at["fp32", "average (%)"] == 40.0
    assert smol.at["fp32", "decode tok/s"] == 40.0 and smol.at["fp32", "peak MiB"] == 900
    # published figures keep their marker; the average covers only the benchmarks the row has
    published = matrix[matrix["kind"] == "published"]
    assert len(published) and published.iloc[0]["benchmarks"].split(" of ")[0] != "0"
    cells = [c for c in published.iloc[0] if isinstance(c, str) and c.endswith("(published)")]
    assert cells
    # ranked by average, best first
    averages = [a for a in matrix["average (%)"] if a != ""]
    assert averages == sorted(averages, reverse=True) and list(matrix["rank"][:3]) == [1, 2, 3]
    by_model = model_matrix(board, sort_by="model")
    assert list(by_model["model"]) == sorted(by_model["model"])


def test_limited_runs_only_in_the_quick_runs_view(store):
    """Fix 4: a run limited to 1 item scored 100% and topped the main table."""
    add_mc(store, "gemma3-270m", 1.0, n=2, limit=1)
    add_mc(store, "smollm2-135m", 0.40, n=200, limit=None)
    board = build_leaderboard(store.bench_results_frame(), MODELS)
    main = model_matrix(board)
    assert "gemma3-270m" not in set(main.loc[main["kind"] == "measured", "model"])
    assert main.iloc[0]["average (%)"] != 100.0
    quick = model_matrix(board, limited=True)
    assert list(quick["model"]) == ["gemma3-270m"] and list(quick["rank"]) == [""]  # never ranked
