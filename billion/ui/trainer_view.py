"""How the LoRA trainer tab draws engine results: dataset reports, previews, curves, progress, results.

Pure rendering: typed engine objects in, Markdown / tables / figures out; nothing here trains.
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
from matplotlib.figure import Figure

from billion.train.data import DatasetReport, FORMAT_FIELDS
from billion.train.events import TrainEvent
from billion.train.runs import RunStatus, TrainResult
from billion.train.tokens import DatasetPreview, Histogram

TRAINED, PROMPT = "trained", None
PROBLEM_COLUMNS = ["row", "problem"]
ANSWER_COLUMNS = ["prompt", "base model (adapter off)", "tuned (adapter on)"]
_LISTED_PROBLEMS = 200


def report_markdown(report: DatasetReport) -> str:
    lines = [f"**Format:** `{report.format}` ({FORMAT_FIELDS.get(report.format, '')}) · "
             f"**usable rows:** {report.usable} of {report.rows}"]
    if report.problems:
        lines.append(f"⚠️ {len(report.problems)} row(s) skipped: see the table below.")
    lines += [f"⚠️ {warning}" for warning in report.warnings]
    return "\n\n".join(lines)


def problems_frame(report: DatasetReport | None, extra: Sequence[Any] = ()) -> pd.DataFrame:
    problems = [*(report.problems if report else ()), *extra][:_LISTED_PROBLEMS]
    return pd.DataFrame([(p.row, p.message) for p in problems], columns=PROBLEM_COLUMNS)


def highlighted(preview: DatasetPreview) -> list[tuple[str, str | None]]:
    """The preview examples one after another, trained spans labelled for gr.HighlightedText."""
    pieces: list[tuple[str, str | None]] = []
    for example in preview.examples:
        pieces.append((f"\n── row {example.row}: {example.tokens} tokens, "
                       f"{example.trained_tokens} trained ──\n", PROMPT))
        pieces += [(span.text, TRAINED if span.trained else PROMPT) for span in example.spans]
        if example.cut_text:
            pieces.append((f"\n[cut off by the cutoff: {example.cut_text[:200]}…]\n", "cut"))
    return pieces


def preview_markdown(preview: DatasetPreview) -> str:
    hist = preview.histogram
    total = sum(hist.counts)
    lines = [f"{total} row(s) tokenized; {hist.over_cutoff} longer than the cutoff of {hist.cutoff} tokens."]
    lines += [f"⚠️ {w}" for w in preview.warnings]
    lines += [f"⚠️ {p}" for p in preview.problems[:10]]
    return "\n\n".join(lines)


def histogram_figure(hist: Histogram) -> Figure:
    # A bare Figure (not pyplot): nothing global to close, safe across request threads.
    figure = Figure(figsize=(6, 2.8), layout="constrained")
    axes = figure.add_subplot()
    widths = [b - a for a, b in zip(hist.edges, hist.edges[1:])]
    axes.bar(hist.edges[:-1], hist.counts, width=widths, align="edge", color="#6c8ebf", edgecolor="white")
    axes.axvline(hist.cutoff, color="#c00", linestyle="--", label=f"cutoff {hist.cutoff}")
    axes.set_xlabel("tokens per example (before the cutoff)")
    axes.set_ylabel("examples")
    # headroom: the tallest bar and the legend both show instead of touching the frame's top
    axes.set_ylim(0, max(1, max(hist.counts, default=0)) * 1.3)
    axes.legend(loc="upper right")
    return figure


def loss_figure(events: Sequence[TrainEvent]) -> Figure:
    figure = Figure(figsize=(6, 3), layout="constrained")
    axes = figure.add_subplot()
    train = [(e.step, e.loss) for e in events if e.kind == "train" and e.loss is not None]
    evals = [(e.step, e.eval_loss) for e in events if e.kind in ("eval", "done", "stopped")
             and e.eval_loss is not None]
    if train:
        # a line needs two points: a short run's steps are drawn as markers too
        axes.plot(*zip(*train), label="train loss", color="#1f77b4", marker="o" if len(train) < 3 else None)
    if evals:
        axes.plot(*zip(*evals), "o-", label="eval loss", color="#d62728")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    if train or evals:
        axes.legend()
    else:
        axes.text(0.5, 0.5, "waiting for the first step…", ha="center", va="center",
                  transform=axes.transAxes)
    return figure


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def probe_markdown(probe: dict[str, Any] | None, event: TrainEvent | None) -> str:
    """The probe's measurements (from run.json) or, until those are written, its event."""
    if probe:
        text = (f"**Probe** ({probe['steps']} steps): {probe['tokens_per_s']:.0f} tokens/s, "
                f"{probe['step_s']:.2f} s/step, peak memory {probe['peak_memory_bytes'] / 2**30:.2f} GB "
                f"of {probe['available_memory_bytes'] / 2**30:.1f} GB free, "
                f"ETA {_minutes(probe['eta_s'])} for {probe['total_steps']} steps")
        return text + "".join(f"\n\n⚠️ {w}" for w in probe.get("warnings", ()))
    if event is not None:
        text = f"**Probe:** {event.tokens_per_s or 0:.0f} tokens/s, ETA {_minutes(event.eta_s)}"
        return text + (f"\n\n⚠️ {event.message}" if event.message else "")
    return ""


def progress_markdown(status: RunStatus, events: Sequence[TrainEvent], probe: dict[str, Any] | None) -> str:
    train = [e for e in events if e.kind == "train"]
    last = train[-1] if train else None
    share = status.step / status.max_steps if status.max_steps else 0.0
    bar = "█" * round(20 * share) + "░" * (20 - round(20 * share))
    parts = [f"**Run `{status.run_id}` · {status.state}** · step {status.step}/{status.max_steps or '?'} "
             f"`{bar}` {100 * share:.0f}%"]
    if last is not None:
        parts.append(f"loss {last.loss:.4f} · {last.tokens_per_s or 0:.0f} tokens/s · "
                     f"ETA {_minutes(last.eta_s)} · elapsed {_minutes(last.elapsed_s)}")
    probe_text = probe_markdown(probe, next((e for e in events if e.kind == "probe"), None))
    if probe_text:
        parts.append(probe_text)
    notes = [e.message for e in events if e.kind == "status" and e.message][-3:]
    parts += [f"ℹ️ {note}" for note in notes]
    if status.error:
        parts.append(f"❌ **Failed:** {status.error}")
    return "\n\n".join(parts)


def result_markdown(result: TrainResult) -> str:
    before, after = result.eval_loss_before, result.eval_loss_after
    loss = (f"eval loss **{before:.4f} → {after:.4f}**" if before is not None and after is not None
            else "no eval loss (eval fraction 0)")
    stopped = " (stopped early; the adapter holds the steps done)" if result.stopped else ""
    speed = f", {result.tokens_per_s:.0f} tokens/s" if result.tokens_per_s else ""
    return (f"### Run `{result.run_id}` finished{stopped}\n{result.steps}/{result.max_steps} steps in "
            f"{_minutes(result.train_seconds)}{speed}; {loss}."
            + (f"\n\nBefore/after {result.answer_sampling}." if result.answer_sampling else ""))


def answers_frame(result: TrainResult | None) -> pd.DataFrame:
    rows = [(a.prompt, a.before, a.after) for a in (result.answers if result else ())]
    return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


def run_label(record: dict[str, Any], mine: bool = True) -> str:
    """A run picker entry; a run started from the command line says so (it is read-only here)."""
    config = record.get("config") or {}
    where = "" if mine else " · command line (read-only)"
    return f"{record['id']} · {config.get('model', '?')} · {record.get('status', '?')}{where}"
