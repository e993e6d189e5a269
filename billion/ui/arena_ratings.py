"""The Arena tab's ratings section: leaderboard table, interval plot, heatmaps, the export, and the
panel that shows them.

Figures are built with matplotlib's object API (no pyplot state); gr.Plot closes them once drawn.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from billion.arena.ratings import ANCHOR, MIN_VOTES, RatingTable, compute_ratings
from billion.context import AppContext
from billion.store.store import Store

RATING_ROUNDS = 200
TABLE_COLUMNS = ["rank", "model", "rating", "95% CI", "votes", "win rate", "Elo"]
#: exports older than this are removed when a new one is made
EXPORT_MAX_AGE_S = 3600.0


@functools.lru_cache(maxsize=8)
def _ratings_for(store: Store, fingerprint: tuple) -> RatingTable:
    # fingerprint is part of the key only: a new vote makes a new key, so the table is recomputed.
    return compute_ratings(store.battles_frame(voted_only=True), bootstrap_rounds=RATING_ROUNDS)


def current_ratings(store: Store) -> RatingTable:
    """Ratings over every counted vote in the store, recomputed only when votes change."""
    return _ratings_for(store, store.vote_fingerprint())


def ratings_frame(table: RatingTable) -> pd.DataFrame:
    rows = [[r.rank, r.model, round(r.rating), r.interval_text, r.votes,
             f"{100 * r.win_rate:.0f}%", round(r.elo)] for r in table.ratings]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _battles(n: int) -> str:
    return f"{n} battle" if n == 1 else f"{n} battles"


def ratings_summary(table: RatingTable) -> str:
    if not table.ratings:
        left_out = f" ({_battles(table.n_flagged)} flagged and left out)" if table.n_flagged else ""
        return f"No counted votes yet{left_out}: run a battle above."
    left_out = (f"; {_battles(table.n_flagged)} left out because an answer named its model"
                if table.n_flagged else "")
    return (f"**{_battles(table.n_battles)} counted**{left_out}. Bradley-Terry ratings on an Elo-like "
            f"scale (mean {ANCHOR:.0f}), 95% intervals from {table.bootstrap_rounds} bootstrap "
            "rounds; overlapping intervals share a rank. Elo is the online rating, for reference.")


def _empty_figure(title: str) -> Figure:
    fig = Figure(figsize=(5, 2.2), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    ax.text(0.5, 0.5, "No counted votes yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def ratings_figure(table: RatingTable) -> Figure:
    """Each model's rating with its 95% interval, best at the top."""
    title = "Ratings with 95% intervals"
    if not table.ratings:
        return _empty_figure(title)
    ratings = list(reversed(table.ratings))
    fig = Figure(figsize=(6, 1.2 + 0.45 * len(ratings)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(ratings))
    x = np.array([r.rating for r in ratings])
    settled = np.array([r.settled for r in ratings])
    errors = np.array([[r.rating - r.ci_low for r in ratings], [r.ci_high - r.rating for r in ratings]])
    if settled.any():
        ax.errorbar(x[settled], y[settled], xerr=np.clip(errors[:, settled], 0, None), fmt="o",
                    capsize=4, label="95% interval")
    if not settled.all():  # no bar: a bar from a handful of votes reads as certainty
        ax.scatter(x[~settled], y[~settled], facecolors="none", edgecolors="tab:gray",
                   label=f"needs more votes (< {MIN_VOTES})")
    ax.legend(fontsize=7, loc="best")
    ax.axvline(ANCHOR, linestyle=":", color="grey")
    ax.set_yticks(y, labels=[r.model for r in ratings])
    ax.set_xlabel("rating")
    ax.set_title(title)
    return fig


def heatmap_figure(matrix: pd.DataFrame, title: str, fmt: str, cmap: str,
                   vmin: float | None = None, vmax: float | None = None) -> Figure:
    """A labelled heatmap of a model x model matrix; NaN cells (never met) stay blank."""
    if matrix.empty:
        return _empty_figure(title)
    n = len(matrix)
    fig = Figure(figsize=(2.5 + 0.9 * n, 1.8 + 0.7 * n), layout="constrained")
    ax = fig.subplots()
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), labels=matrix.columns, rotation=30, ha="right")
    ax.set_yticks(range(n), labels=matrix.index)
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            ax.text(j, i, format(value, fmt), ha="center", va="center", fontsize=9)
    ax.set_title(title)
    return fig


def win_rate_figure(table: RatingTable) -> Figure:
    return heatmap_figure(table.win_rates, "Win rate of row vs column", ".2f", "RdYlGn", 0.0, 1.0)


def battle_count_figure(table: RatingTable) -> Figure:
    return heatmap_figure(table.battle_counts, "Battles per pair", ".0f", "Blues", 0)


def ratings_view(store: Store) -> tuple[str, pd.DataFrame, Figure, Figure, Figure]:
    """Everything the ratings section shows, from one rating computation."""
    table = current_ratings(store)
    return (ratings_summary(table), ratings_frame(table), ratings_figure(table),
            win_rate_figure(table), battle_count_figure(table))


def _prune_exports(root: Path, max_age_s: float) -> None:
    cutoff = time.time() - max_age_s
    for folder in root.iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def export_voted_battles(store: Store, root: Path) -> list[str]:
    """Write every voted battle as JSONL and CSV into a fresh folder under root (the exports folder).

    Open battles stay out: their contestants are still secret.
    """
    root.mkdir(parents=True, exist_ok=True)
    _prune_exports(root, EXPORT_MAX_AGE_S)
    folder = Path(tempfile.mkdtemp(prefix="battles-", dir=root))
    jsonl, csv = folder / "arena_battles.jsonl", folder / "arena_battles.csv"
    store.export_jsonl(jsonl, voted_only=True)
    store.export_csv(csv, voted_only=True)
    return [str(jsonl), str(csv)]


# ---- the panel on the Arena tab ----------------------------------------------------------------

def on_load(ctx: AppContext, render: Callable[[RatingTable], Any]) -> Callable[[], Any]:
    """A value computed at each page load: the current ratings, drawn by render."""
    return lambda: render(current_ratings(ctx.store))


def ratings_panel(ctx: AppContext) -> SimpleNamespace:
    """Ratings, win rates and battle counts from the stored votes, and the export."""
    with gr.Accordion("Ratings", open=True):
        # Callables: Gradio recomputes each on page load (from one cached rating table).
        summary = gr.Markdown(on_load(ctx, ratings_summary), label="Summary")
        table = gr.Dataframe(on_load(ctx, ratings_frame), interactive=False, label="Leaderboard")
        with gr.Row():
            rating_plot = gr.Plot(on_load(ctx, ratings_figure), label="Ratings", show_label=False)
            win_plot = gr.Plot(on_load(ctx, win_rate_figure), label="Win rates", show_label=False)
            count_plot = gr.Plot(on_load(ctx, battle_count_figure), label="Battle counts",
                                 show_label=False)
        gr.Markdown(ctx.durability, label="Where votes are kept")
        with gr.Row():
            refresh = gr.Button("Refresh ratings")
            export = gr.Button("Export voted battles (JSONL + CSV)", visible=ctx.settings.votes_public)
        files = gr.File(label="Export", file_count="multiple", interactive=False)
    return SimpleNamespace(summary=summary, table=table, rating_plot=rating_plot, win_plot=win_plot,
                           count_plot=count_plot, refresh=refresh, export=export, files=files)
