"""Precision as one user-facing choice (fp32 / bf16 / fp16 / int8 / int4 / auto), and what "auto" means.

On CUDA and MPS, "auto" keeps the dtype rule of billion.core.loading. On CPU it picks the fastest
precision whose measured quality on the offline suite stays inside fp32's 95% interval for every
model measured and whose next tokens agree with fp32's on at least MIN_TOP1_AGREEMENT of the suite's
text (billion.core.fidelity: the suite alone is too close to chance to tell int8 from int4), read
from a committed results file (assets/precision_quality.json, written by
benchmarks/precision_quality.py from stored bench results): the rule is data with provenance,
not a constant in code. Without that file, or with no precision passing, "auto" on CPU is fp32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from billion.core.errors import BillionError
from billion.core.loading import LoadOptions, pick_device
from billion.core.paths import ASSETS

QUALITY_FILE = ASSETS / "precision_quality.json"
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8", "int4")
#: precisions "auto" may pick on CPU; fp32 is the reference they are measured against
CPU_CANDIDATES = ("int8", "int4", "bf16")
TRAINABLE_CPU = ("auto", "fp32", "bf16")
#: teacher-forced top-1 agreement with fp32 a precision needs to be "auto" (measured: block int8
#: 98.8%, block int4 91.9% / 79.9% on SmolLM2-135M / Gemma-3-270M; int4 turns SmolLM2's answer to
#: "What is the capital of France?" into "L'Étoile")
MIN_TOP1_AGREEMENT = 0.95


@dataclass(frozen=True)
class QualityRow:
    """One model at one precision on the offline suite, with its measured decode speed."""

    model: str
    precision: str
    label: str
    acc_norm: float
    ci_low: float
    ci_high: float
    n: int
    decode_tok_s: float | None = None
    #: billion.core.fidelity against fp32 on the suite's text (None: not measured)
    top1_agreement: float | None = None
    mean_kl: float | None = None


@dataclass(frozen=True)
class SpeedRow:
    """Decode speed of a model that has no quality figure (random weights of a hub model's config):
    it counts in "auto"'s speed rule, because the 1B-class models are what "auto" is for."""

    model: str
    precision: str
    decode_tok_s: float


@dataclass(frozen=True)
class AutoChoice:
    """What "auto" resolved to on CPU, and the measured figures behind it."""

    precision: str
    #: one line for people: the figures and the rule
    reason: str
    rows: tuple[QualityRow, ...] = ()


def load_quality(path: Path = QUALITY_FILE) -> tuple[QualityRow, ...]:
    if not path.is_file():
        return ()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return tuple(QualityRow(**row) for row in data["rows"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BillionError(f"{path} is not a precision-quality file ({exc}): regenerate it with "
                           "`python benchmarks/precision_quality.py`.") from exc


def load_speed_only(path: Path = QUALITY_FILE) -> tuple[SpeedRow, ...]:
    """The file's speed-only rows (none in an older file)."""
    if not path.is_file():
        return ()
    try:
        return tuple(SpeedRow(**row) for row in json.loads(path.read_text(encoding="utf-8"))
                     .get("speed_only", ()))
    except (ValueError, TypeError) as exc:
        raise BillionError(f"{path} has unreadable speed_only rows ({exc}): regenerate it with "
                           "`python benchmarks/precision_quality.py`.") from exc


def within_fp32_interval(rows: tuple[QualityRow, ...], precision: str) -> tuple[bool, list[str]]:
    """Whether `precision`'s acc_norm lies in fp32's 95% interval on every model with an fp32 row."""
    notes, ok = [], True
    models = sorted({r.model for r in rows if r.precision == "fp32"})
    for model in models:
        base = next((r for r in rows if r.model == model and r.precision == "fp32"), None)
        other = next((r for r in rows if r.model == model and r.precision == precision), None)
        if base is None or other is None:
            return False, [f"{model}: {precision} or fp32 not measured"]
        inside = base.ci_low <= other.acc_norm <= base.ci_high
        ok &= inside
        notes.append(f"{model} {other.acc_norm:.1%} vs fp32 {base.acc_norm:.1%} "
                     f"[{base.ci_low:.1%}, {base.ci_high:.1%}]")
    return ok and bool(models), notes


def follows_fp32(rows: tuple[QualityRow, ...], precision: str) -> tuple[bool, list[str]]:
    """Whether `precision` agrees with fp32's next token often enough on every model where measured."""
    ok, notes = True, []
    for row in rows:
        if row.precision == precision and row.top1_agreement is not None:
            ok &= row.top1_agreement >= MIN_TOP1_AGREEMENT
            notes.append(f"{row.model} top-1 = fp32 on {row.top1_agreement:.1%} of tokens")
    return ok, notes


def _speed(rows: tuple[QualityRow | SpeedRow, ...], precision: str) -> float:
    """Mean measured speed relative to fp32 over the models (0 when not measured)."""
    ratios = []
    for model in sorted({r.model for r in rows}):
        base = next((r for r in rows if r.model == model and r.precision == "fp32"), None)
        other = next((r for r in rows if r.model == model and r.precision == precision), None)
        if base and other and base.decode_tok_s and other.decode_tok_s:
            ratios.append(other.decode_tok_s / base.decode_tok_s)
    return sum(ratios) / len(ratios) if ratios else 0.0


def choose_cpu_precision(rows: tuple[QualityRow, ...],
                         speed_only: tuple[SpeedRow, ...] = ()) -> AutoChoice:
    """The fastest measured precision within fp32's interval; fp32 when none is (or no data).
    Quality comes from `rows`; speed is the mean ratio to fp32 over `rows` and `speed_only`."""
    if not rows:
        return AutoChoice("fp32", "no measured precision-quality file: fp32")
    passing = []
    for precision in CPU_CANDIDATES:
        ok, notes = within_fp32_interval(rows, precision)
        follows, agreement = follows_fp32(rows, precision)
        speed = _speed((*rows, *speed_only), precision)
        if ok and follows and speed > 1.0:
            passing.append((speed, precision, notes + agreement))
    if not passing:
        return AutoChoice("fp32", "no faster precision stayed within fp32's 95% interval and agreed with "
                                  f"fp32's next token on {MIN_TOP1_AGREEMENT:.0%} of the suite: fp32", rows)
    speed, precision, notes = max(passing)
    models = len({r.model for r in (*rows, *speed_only)})
    reason = (f"{precision}: {speed:.1f}x fp32's decode speed (mean over {models} models), offline-suite acc_norm within fp32's "
              f"95% interval, next token as fp32's on >= {MIN_TOP1_AGREEMENT:.0%} ({'; '.join(notes)})")
    return AutoChoice(precision, reason, rows)


@lru_cache(maxsize=1)
def auto_cpu_choice() -> AutoChoice:
    return choose_cpu_precision(load_quality(), load_speed_only())


QUALITY_COLUMNS = ["model", "precision", "kernel", "acc_norm %", "95% CI", "n", "vs fp32 (points)",
                   "within fp32's 95% CI", "top-1 = fp32 %", "KL vs fp32", "decode tok/s", "speed vs fp32"]


def quality_rows(rows: tuple[QualityRow, ...] | None = None) -> list[list]:
    """The measured rows as table cells (Leaderboard), each next to its model's fp32 row."""
    rows = load_quality() if rows is None else rows
    cells = []
    for row in rows:
        base = next((r for r in rows if r.model == row.model and r.precision == "fp32"), None)
        delta = (row.acc_norm - base.acc_norm) * 100 if base else None
        inside = ("fp32 not measured" if base is None
                  else "yes" if base.ci_low <= row.acc_norm <= base.ci_high else "no")
        speed = (row.decode_tok_s / base.decode_tok_s
                 if base and row.decode_tok_s and base.decode_tok_s else None)
        cells.append([row.model, row.precision, row.label, round(row.acc_norm * 100, 1),
                      f"{row.ci_low * 100:.1f} to {row.ci_high * 100:.1f}", row.n,
                      None if delta is None else round(delta, 1), inside,
                      None if row.top1_agreement is None else round(row.top1_agreement * 100, 1),
                      None if row.mean_kl is None else round(row.mean_kl, 4),
                      None if row.decode_tok_s is None else round(row.decode_tok_s, 1),
                      None if speed is None else f"{speed:.2f}x"])
    return cells


def options_for(precision: str, device: str = "auto", adapter: str | None = None) -> LoadOptions:
    """LoadOptions for a user-facing precision; "auto" on CPU is the measured fast choice."""
    if precision not in PRECISIONS:
        raise BillionError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        if pick_device(device).type != "cpu":
            return LoadOptions(device=device, adapter=adapter)
        precision = auto_cpu_choice().precision
    if precision in ("int8", "int4"):
        return LoadOptions(device=device, quantization=precision, adapter=adapter)  # type: ignore[arg-type]
    return LoadOptions(device=device, dtype=precision, adapter=adapter)


def resolve_auto(options: LoadOptions) -> LoadOptions:
    """The same options with an unquantized "auto" dtype resolved (CPU: the measured fast choice)."""
    if options.dtype != "auto" or options.quantization != "none":
        return options
    return options_for("auto", options.device, options.adapter)


def available_precisions(device: str = "auto") -> tuple[str, ...]:
    """What this device can run: CPU fp32/bf16/int8/int4, CUDA adds fp16, MPS fp32/fp16."""
    kind = pick_device(device).type
    if kind == "cuda":
        bf16 = ("bf16",) if torch.cuda.is_bf16_supported() else ()
        return ("auto", "fp32", *bf16, "fp16", "int8", "int4")
    if kind == "mps":
        return ("auto", "fp32", "fp16")
    return ("auto", "fp32", "bf16", "int8", "int4")


def precision_of(options: LoadOptions) -> str:
    """The user-facing name of a LoadOptions (inverse of options_for, "auto" where unresolved)."""
    return options.quantization if options.quantization != "none" else options.dtype
