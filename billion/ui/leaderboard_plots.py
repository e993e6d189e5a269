"""The Leaderboard's figures: accuracy vs size (measured with intervals, published hollow) and decode
speed vs peak memory. matplotlib's object API (no pyplot state); gr.Plot closes them once drawn."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from billion.bench.leaderboard import MEASURED

PLOT_MARKERS = {"billion-mc": ("o", "tab:blue"), "billion-mc-cloze": ("D", "tab:green"),
                "mmlu": ("^", "tab:purple")}
PUBLISHED_MARKERS = ["s", "v", "X", "P"]
SIZE_TICKS = [100, 200, 500, 1000, 2000, 5000, 10000]
QUANT_OFFSET = {"none": 1.0, "int8": 1.07, "int4": 1.14}  # spread variants of one size apart


def _empty_figure(title: str, text: str) -> Figure:
    fig = Figure(figsize=(6, 2.5), layout="constrained")
    ax = fig.subplots()
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def score_figure(points: pd.DataFrame) -> Figure:
    """Accuracy vs parameters: measured with 95% bars (filled), published MMLU-like (hollow)."""
    title = "Multiple-choice accuracy vs size"
    if points.empty:
        return _empty_figure(title, "No measured or published multiple-choice scores in this view")
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    measured = points[points["kind"] == MEASURED]
    for task, group in measured.groupby("benchmark"):
        marker, color = PLOT_MARKERS.get(task, ("o", "tab:gray"))
        x = group["params"] * group["quantization"].map(QUANT_OFFSET).fillna(1.0)
        bars = [(group["score"] - group["low"]).clip(lower=0).fillna(0),
                (group["high"] - group["score"]).clip(lower=0).fillna(0)]
        ax.errorbar(x, group["score"], yerr=bars, fmt=marker, color=color, capsize=4,
                    label=f"measured: {task} (95% CI)")
        for xi, yi, label in zip(x, group["score"], group["label"]):
            ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(5, 4), fontsize=7)
    published = points[points["kind"] != MEASURED]
    for (benchmark, group), marker in zip(published.groupby("benchmark"), PUBLISHED_MARKERS * 3):
        ax.scatter(group["params"], group["score"], marker=marker, facecolors="none",
                   edgecolors="tab:orange", label=f"published: {benchmark} (settings vary)")
        for xi, yi, label in zip(group["params"], group["score"], group["label"]):
            ax.annotate(label, (xi, yi), textcoords="offset points", xytext=(5, -9), fontsize=7,
                        color="tab:orange")
    ax.axhline(25.0, linestyle=":", color="grey", label="chance (4 choices)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(SIZE_TICKS))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("parameters (millions, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.legend(fontsize=7, loc="best")
    return fig


def speed_figure(points: pd.DataFrame) -> Figure:
    title = "Decode speed vs peak memory"
    if points.empty:
        return _empty_figure(title, "No speed results in this view: run the 'speed' task")
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    ax.scatter(points["memory_mib"], points["tokens_per_s"], color="tab:blue")
    for _, p in points.iterrows():
        ax.annotate(f"{p['label']} @{p['prompt_tokens']}", (p["memory_mib"], p["tokens_per_s"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xlabel("peak memory (MiB; the model alone in a child process on CPU, max allocated on GPU)")
    ax.set_ylabel("decode tokens/s (shortest prompt measured)")
    ax.set_title(title)
    return fig
