"""What the Speculative race tab shows, as HTML and figures: pure functions of a finished race.

Model text is escaped before it enters HTML. The replay is a schedule of frames computed from the
recorded per-token times, so the animation shows the race at its true pace (scaled down only when
it would last longer than `MAX_REPLAY_S`).
"""

from __future__ import annotations

import dataclasses
import html
import math
from bisect import bisect_right
from dataclasses import dataclass
from typing import Sequence

from matplotlib.figure import Figure

from billion.core.generation import Detokenizer
from billion.spec.race import RaceResult, SweepPoint

MAX_REPLAY_S = 20.0
FRAME_S = 0.05
MAX_ROUNDS_SHOWN = 300
KIND_LABELS = {"accepted": "accepted draft token", "correction": "target's correction",
               "bonus": "bonus token (all drafts accepted)", "rejected": "rejected draft token"}
_PANE = ("white-space:pre-wrap;font-family:ui-monospace,monospace;font-size:0.92em;line-height:1.5;"
         "min-height:10em;max-height:28em;overflow:auto;padding:0.6em;border:1px solid #8884;"
         "border-radius:6px")
_CHIP = "display:inline-block;margin:1px;padding:0 3px;border-radius:3px;border:1px solid #8884"


@dataclass(frozen=True)
class RaceView:
    """A finished race with the text each token added, ready to render and replay (picklable)."""

    result: RaceResult
    #: text each plain token added, trimmed to the final answer (same length as plain.token_ids)
    plain_pieces: tuple[str, ...]
    plain_times: tuple[float, ...]
    spec_pieces: tuple[str, ...]
    spec_times: tuple[float, ...]
    #: per round: the text of each drafted token, then of the token the target added
    round_tokens: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Frame:
    #: seconds since the replay began at which to show this frame
    at_s: float
    #: recorded seconds since each run began that this frame shows
    clock_s: float
    plain: int
    speculative: int


def fit_pieces(pieces: Sequence[str], text: str) -> tuple[str, ...]:
    """Per-token pieces cut to the final text: leading whitespace the answer dropped, a stop string."""
    joined = "".join(pieces)
    start = 0 if joined.startswith(text) else len(joined) - len(joined.lstrip())
    end = start + len(text)
    out, pos = [], 0
    for piece in pieces:
        lo, hi = max(pos, start), min(pos + len(piece), end)
        out.append(piece[lo - pos:hi - pos] if hi > lo else "")
        pos += len(piece)
    return tuple(out)


def build_view(result: RaceResult, tokenizer) -> RaceView:
    detok = Detokenizer(tokenizer)
    plain_ids = result.plain.token_ids
    plain_pieces = fit_pieces([detok.add(t) for t in plain_ids], result.plain.text)
    spec = result.speculative
    spec_pieces = fit_pieces([t.text for t in spec.tokens], spec.text)
    # One token at a time, special tokens kept, so an EOS the target chose shows in the rounds.
    rounds = tuple(tuple(tokenizer.decode([t], skip_special_tokens=False)
                         for t in (*r.drafted, r.emitted[-1]))
                   for r in spec.rounds[:MAX_ROUNDS_SHOWN])
    return RaceView(result, plain_pieces, tuple(result.plain.token_times[:len(plain_ids)]), spec_pieces,
                    spec.token_times, rounds)


def replay_frames(plain_times: Sequence[float], spec_times: Sequence[float],
                  max_seconds: float = MAX_REPLAY_S, frame_s: float = FRAME_S) -> tuple[Frame, ...]:
    """Frames at the recorded token times (both runs start at 0), at most one per frame_s of replay;
    time runs slower than recorded by however much keeps the replay within max_seconds."""
    end = max([0.0, *plain_times, *spec_times])
    scale = min(1.0, max_seconds / end) if end > 0 else 1.0
    slots: dict[int, Frame] = {}
    for clock in sorted({0.0, *plain_times, *spec_times}):
        # A token shows at most one frame late, never early.
        slot = math.ceil(clock * scale / frame_s - 1e-9)
        slots[slot] = Frame(slot * frame_s, clock, bisect_right(plain_times, clock),
                            bisect_right(spec_times, clock))
    return tuple(slots[s] for s in sorted(slots))


def _span(text: str, kind: str) -> str:
    return f'<span class="provenance-{kind}" title="{KIND_LABELS[kind]}">{html.escape(text)}</span>'


def _chip(text: str, kind: str) -> str:
    shown = text.replace(" ", "·").replace("\n", "↵").replace("\t", "⇥") or "∅"
    return (f'<span class="provenance-{kind}" style="{_CHIP}" title="{KIND_LABELS[kind]}">'
            f"{html.escape(shown)}</span>")


def legend_html() -> str:
    items = " ".join(_chip(KIND_LABELS[k], k) for k in ("accepted", "correction", "bonus", "rejected"))
    return f'<div style="margin:0.3em 0">{items}</div>'


def _pane(title: str, body: str, status: str) -> str:
    return (f"<div><div style='font-weight:600'>{html.escape(title)}</div>"
            f"<div style='opacity:0.8;font-size:0.9em'>{status}</div>"
            f"<div style='{_PANE}'>{body}</div></div>")


def _status(shown: int, total: int, clock_s: float, finish_s: float, ttft_s: float, rate: float) -> str:
    if shown >= total:
        return (f"✓ finished: {total} tokens in {finish_s:.2f} s · first token {ttft_s:.2f} s · "
                f"{rate:.1f} tokens/s")
    return f"{shown}/{total} tokens · {clock_s:.2f} s"


def plain_pane(view: RaceView, shown: int, clock_s: float) -> str:
    plain = view.result.plain
    cursor = "" if shown >= len(view.plain_pieces) else "▌"
    body = html.escape("".join(view.plain_pieces[:shown])) + cursor
    end = view.plain_times[-1] if view.plain_times else 0.0
    return _pane("Plain decoding (one target forward per token)", body,
                 _status(shown, len(view.plain_pieces), clock_s, end, plain.ttft_s,
                         plain.decode_tokens_per_s))


def spec_pane(view: RaceView, shown: int, clock_s: float) -> str:
    spec = view.result.speculative
    spans = "".join(_span(piece, token.kind) for piece, token in zip(view.spec_pieces[:shown], spec.tokens)
                    if piece)
    body = spans + ("" if shown >= len(view.spec_pieces) else "▌")
    end = view.spec_times[-1] if view.spec_times else 0.0
    title = f"Speculative decoding ({view.result.draft}, k={view.result.schedule.k}"
    title += " dynamic)" if view.result.schedule.dynamic else ")"
    return _pane(title, body, _status(shown, len(view.spec_pieces), clock_s, end, spec.ttft_s,
                                      spec.decode_tokens_per_s)) + legend_html()


def badge_html(result: RaceResult) -> str:
    if result.lossless is None:
        colour, text = "#888", (
            f"Lossless check: not applicable at temperature {result.settings.temperature:g}. Speculative "
            "sampling keeps the target's output distribution exactly, but two sampled runs differ by "
            "chance, so their tokens are not compared. Set temperature 0 (greedy) to check token identity.")
    elif result.lossless:
        colour, text = "#1a7f37", (f"LOSSLESS ✓ greedy outputs are identical, token for token "
                                   f"({len(result.plain.token_ids)} tokens)")
    elif result.verdict == "numerics" and result.divergence is not None:
        d = result.divergence
        colour, text = "#9a6700", (
            f"DIFFERS BY NUMERICS ≈ greedy outputs part at token {d.position}, a near-tie: margin "
            f"{d.margin:.2g} (plain {d.plain_margin:.2g}, speculative {d.speculative_margin:.2g}), while the "
            f"logits of a multi-token verify and a 1-token step differ by {d.logit_difference:.2g} there "
            f"(and by up to {d.agreeing_difference:.2g} at the tokens before, where they agree). Both "
            "outputs are the target's greedy output for their own arithmetic.")
    else:
        d = result.divergence
        why = "" if d is None else (f": the runs' logits differ by {d.logit_difference:.2g} there, margin "
                                    f"{d.margin:.2g}, more than rounding at this precision explains")
        colour, text = "#c00", (f"NOT LOSSLESS ✗ greedy outputs differ from token "
                                f"{result.first_difference} "
                                f"on ({len(result.plain.token_ids)} plain vs "
                                f"{len(result.speculative.token_ids)} speculative tokens){why}")
    return (f"<div style='padding:0.5em 0.8em;border-radius:6px;color:white;font-weight:600;"
            f"background:{colour}'>{html.escape(text)}</div>")


def figures_markdown(result: RaceResult) -> str:
    plain, spec = result.plain, result.speculative
    rows = [("plain", len(plain.token_ids), plain.ttft_s, plain.decode_tokens_per_s, plain.total_s, 1.0,
             1.0),
            ("speculative", len(spec.token_ids), spec.ttft_s, spec.decode_tokens_per_s, spec.total_s,
             result.speedup, result.wall_speedup)]
    lines = ["| run | tokens | first token | decode tokens/s | total | decode speedup | wall speedup |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {n} | {ttft:.2f} s | {rate:.1f} | {total:.2f} s | {up:.2f}× | {wall:.2f}× |"
              for name, n, ttft, rate, total, up, wall in rows]
    return "\n".join(lines)


def stats_markdown(result: RaceResult) -> str:
    stats, spec = result.speculative.stats, result.speculative
    lines = [
        f"- **Acceptance rate**: {stats.acceptance_rate:.0%} ({stats.accepted} of {stats.drafted} drafted "
        f"tokens; per-token α = {stats.alpha:.2f})",
        f"- **Tokens per target forward**: {stats.tokens_per_target_forward:.2f} ({len(spec.token_ids)} "
        f"tokens in {stats.rounds} rounds, mean k = {stats.mean_k:.2f})",
        f"- **Time**: draft {stats.draft_s:.2f} s, target {stats.target_s:.2f} s, prefill "
        f"{spec.prefill_s:.2f} s; one draft token costs c = {stats.cost_ratio:.3f} target forwards",
        f"- **Verify cost**: a verify forward (mean k + 1 = {stats.mean_k + 1:.1f} tokens) costs "
        f"c_v = {result.verify_cost_ratio:.2f} plain 1-token steps, measured in this race",
        f"- **Speedup**: measured {result.speedup:.2f}× decode ({result.wall_speedup:.2f}× wall); "
        f"predicted {stats.predicted_speedup:.2f}× by Leviathan et al.'s "
        "(1 − α^(k+1)) / ((1 − α)(k·c + 1)), "
        "which assumes verifying k + 1 tokens costs one forward; "
        f"{result.predicted_speedup_measured:.2f}× with the measured c_v in place of that 1",
        f"- Prompt {result.prompt_tokens} tokens; stop: plain {result.plain.finish_reason}, "
        f"speculative {spec.finish_reason}",
    ]
    lines += [f"- **Note**: {note}" for note in result.notes]
    ref = result.reference
    if ref is not None:
        same = ("same output as plain" if ref.token_ids == result.plain.token_ids
                else "output differs from plain")
        wall = ref.total_s / spec.total_s if spec.total_s > 0 else 0.0
        decode = spec.decode_tokens_per_s / ref.decode_tokens_per_s if ref.decode_tokens_per_s else 0.0
        lines.append(f"- **Hugging Face assisted generation** (`{ref.method}`): {len(ref.token_ids)} tokens "
                     f"in {ref.total_s:.2f} s ({ref.decode_tokens_per_s:.1f} tokens/s decode), {same}; "
                     f"ours is {decode:.2f}× its decode speed ({wall:.2f}× wall)")
    return "\n".join(lines)


def rounds_html(view: RaceView) -> str:
    rows = []
    for rnd, texts in zip(view.result.speculative.rounds, view.round_tokens):
        drafted = "".join(_chip(text, "accepted" if i < rnd.accepted else "rejected")
                          for i, text in enumerate(texts[:-1]))
        added = _chip(texts[-1], rnd.kinds[-1])
        rows.append(f"<tr><td>{rnd.index}</td><td>{rnd.time_s:.2f}</td>"
                    f"<td>{rnd.accepted}/{len(rnd.drafted)}</td><td>{drafted or '—'}</td><td>{added}</td>"
                    f"<td>{rnd.draft_s * 1000:.1f}</td><td>{rnd.target_s * 1000:.1f}</td></tr>")
    hidden = len(view.result.speculative.rounds) - len(view.round_tokens)
    more = f"<p>… and {hidden} more rounds.</p>" if hidden > 0 else ""
    return (legend_html() + "<table style='font-size:0.9em'><thead><tr><th>round</th><th>at (s)</th>"
            "<th>accepted</th><th>drafted (rejected struck through)</th><th>target added</th>"
            "<th>draft ms</th><th>target ms</th></tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>" + more)


def race_summary(result: RaceResult) -> dict:
    """What the `race` API returns to scripts: plain JSON."""
    stats = result.speculative.stats

    def run(r, **extra) -> dict:
        return {"text": r.text, "tokens": len(r.token_ids), "ttft_s": r.ttft_s,
                "tokens_per_s": r.decode_tokens_per_s, "total_s": r.total_s,
                "finish_reason": r.finish_reason, **extra}

    ref = result.reference
    return {
        "target": result.target, "draft": result.draft, "k": result.schedule.k,
        "dynamic": result.schedule.dynamic, "temperature": result.settings.temperature,
        "max_new_tokens": result.settings.max_new_tokens, "prompt_tokens": result.prompt_tokens,
        "plain": run(result.plain),
        "speculative": run(result.speculative, rounds=stats.rounds),
        "speedup": result.speedup, "wall_speedup": result.wall_speedup,
        "acceptance_rate": stats.acceptance_rate,
        "tokens_per_target_forward": stats.tokens_per_target_forward,
        "draft_s": stats.draft_s, "target_s": stats.target_s, "cost_ratio": stats.cost_ratio,
        "verify_cost_ratio": result.verify_cost_ratio, "mean_k": stats.mean_k,
        "predicted_speedup": stats.predicted_speedup,
        "predicted_speedup_measured": result.predicted_speedup_measured,
        "lossless": result.lossless, "first_difference": result.first_difference,
        "verdict": result.verdict, "notes": list(result.notes),
        "divergence": None if result.divergence is None else dataclasses.asdict(result.divergence),
        "reference": None if ref is None else {"method": ref.method, "text": ref.text,
                                               "tokens": len(ref.token_ids), "total_s": ref.total_s,
                                               "tokens_per_s": ref.tokens_per_s,
                                               "decode_tokens_per_s": ref.decode_tokens_per_s,
                                               "same_as_plain": ref.token_ids == result.plain.token_ids},
    }


def sweep_figure(points: Sequence[SweepPoint]) -> Figure:
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.add_subplot()
    ks = [p.k for p in points]
    measured = [p.measured_speedup for p in points]
    below = [max(p.measured_speedup - p.low, 0) if p.low == p.low else 0 for p in points]
    above = [max(p.high - p.measured_speedup, 0) if p.high == p.high else 0 for p in points]
    repeats = max((p.repeats for p in points), default=1)
    ax.errorbar(ks, measured, yerr=[below, above], fmt="o-", capsize=3,
                label=f"measured (median of {repeats}, range)" if repeats > 1 else "measured")
    ax.plot(ks, [p.predicted_speedup for p in points], "s--", label="predicted (Leviathan et al.)")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("k (tokens drafted per round)")
    ax.set_ylabel("decode speedup over plain (×)")
    ax.set_xticks(ks)
    tops = [p.high if p.high == p.high else p.measured_speedup for p in points]
    ax.set_ylim(0, max([*tops, *(p.predicted_speedup for p in points), 1.0]) * 1.15)  # tops were clipped
    ax.legend()
    return fig


def sweep_markdown(points: Sequence[SweepPoint]) -> str:
    lines = ["| k | measured (median) | range | predicted | acceptance | tokens/forward | c | verify c_v "
             "| identical |", "|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        same = "–" if p.identical is None else ("yes" if p.identical else "**NO**")
        spread = f"{p.low:.2f}–{p.high:.2f}×" if p.repeats > 1 else "1 run"
        lines.append(f"| {p.k} | {p.measured_speedup:.2f}× | {spread} | {p.predicted_speedup:.2f}× | "
                     f"{p.acceptance_rate:.0%} | {p.tokens_per_target_forward:.2f} | {p.cost_ratio:.3f} | "
                     f"{p.verify_cost_ratio:.2f} | {same} |")
    notes = list(dict.fromkeys(f"k = {p.k}: {p.note}" for p in points if p.note))
    if notes:
        lines += ["", "⚠️ **Noisy timings**: " + "; ".join(notes)]
    return "\n".join(lines)
