"""What the Leaderboard tab shows from the store: the board (scores, ratings and published figures
joined), filtered; the model x benchmark matrix, quick runs apart; all results; both plots."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from billion.bench.leaderboard import (DEFAULT_COLUMNS, KINDS, SIZE_BANDS, build_leaderboard,
                                       filter_leaderboard, select_columns)
from billion.bench.matrix import SORT_CHOICES, model_matrix
from billion.bench.plot_points import score_points, speed_points
from billion.core.errors import BillionError
from billion.core.registry import all_models
from billion.store.store import Store
from billion.ui.arena_ratings import current_ratings
from billion.ui.common import friendly_errors
from billion.ui.leaderboard_plots import score_figure, speed_figure


def current_board(store: Store) -> pd.DataFrame:
    ratings = current_ratings(store)
    return build_leaderboard(store.bench_results_frame(), all_models(), ratings if ratings.ratings else None)


def filtered_board(store: Store, family: list[str] | None, size: str, kinds: list[str] | None,
                   search: str) -> pd.DataFrame:
    if size not in SIZE_BANDS:
        raise BillionError(f"Unknown size band {size!r}: use one of {', '.join(SIZE_BANDS)}.")
    return filter_leaderboard(current_board(store), family or None, SIZE_BANDS[size],
                              kinds if kinds is not None else KINDS, search or "")


@friendly_errors
def leaderboard_view(store: Store, family: list[str] | None, size: str, kinds: list[str] | None,
                     search: str, columns: list[str] | None) -> tuple[pd.DataFrame, Figure, Figure]:
    """The table with the chosen columns, and both plots of the filtered rows."""
    board = filtered_board(store, family, size, kinds, search)
    return (select_columns(board, columns), score_figure(score_points(board)),
            speed_figure(speed_points(board)))


@friendly_errors
def matrix_view(store: Store, family: list[str] | None, size: str, kinds: list[str] | None,
                search: str, sort_by: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model × benchmark table of full runs, and the quick (limited) runs apart."""
    board = filtered_board(store, family, size, kinds, search)
    return model_matrix(board, sort_by=sort_by or SORT_CHOICES[0]), model_matrix(board, limited=True)


def initial_matrix(store: Store) -> pd.DataFrame:
    return model_matrix(current_board(store))


def initial_quick_runs(store: Store) -> pd.DataFrame:
    return model_matrix(current_board(store), limited=True)


def initial_table(store: Store) -> pd.DataFrame:
    return select_columns(current_board(store), DEFAULT_COLUMNS)


def initial_score_plot(store: Store) -> Figure:
    return score_figure(score_points(current_board(store)))


def initial_speed_plot(store: Store) -> Figure:
    return speed_figure(speed_points(current_board(store)))
