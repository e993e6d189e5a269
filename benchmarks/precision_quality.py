"""Write assets/precision_quality.json: offline-suite quality and decode speed of each CPU precision.

    # 1. the full offline suite at each precision (one store for these runs):
    for p in "--dtype fp32" "--dtype bf16" "--quantization int8" "--quantization int4"; do
      .venv/bin/python -m billion bench --model smollm2-135m,gemma3-270m --tasks offline-mc $p \
          --threads 1 --db quality.sqlite3
    done
    # 2. decode speed, same machine:
    .venv/bin/python benchmarks/decode.py --models smollm2-135m,gemma3-270m --json decode.json
    # 3. this file:
    .venv/bin/python benchmarks/precision_quality.py --db quality.sqlite3 --speed decode.json
    # new speeds only (keeps the committed quality rows): --keep-quality instead of --db
    # new quality rows only (e.g. bf16 added): --db new.sqlite3 --keep-quality --keep-speed (the
    # committed file's speeds stay, with the note saying where they come from)
    # some precisions rerun (e.g. after a kernel change): --db new.sqlite3 --keep-quality
    # --fidelity: also measure each quantized row's next-token agreement and KL against fp32 on the
    # suite's text (billion.core.fidelity; loads each model at fp32 and at every precision)

Speed rows of random-weight models (benchmarks/decode.py's 1.1B-class configs) go into
"speed_only": they have no quality figure but count in "auto"'s speed rule.

The Leaderboard shows the file, and billion.core.precision's "auto" rule reads it: the rule's
input is these measured figures, with the commands, machine and date that produced them.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from billion.core.precision import (QUALITY_FILE, QualityRow, SpeedRow, choose_cpu_precision, load_quality,
                                    quality_rows)
from billion.core.quant import SCHEMES, scheme_for
from billion.core.table import format_table
from billion.store.store import Store

TASK = "billion-mc"


def precision_name(settings: dict) -> str:
    quantization = settings.get("quantization", "none")
    return quantization if quantization != "none" else settings.get("dtype", "?")


def quality_from_store(db: Path) -> dict[tuple[str, str], dict]:
    """Latest full-suite billion-mc row per (model, precision): acc_norm, its interval, label."""
    frame = Store(db).bench_results_frame()
    found: dict[tuple[str, str], dict] = {}
    for _, row in frame.sort_values("id").iterrows():
        settings, extra = row["settings"] or {}, row["extra"] or {}
        if row["task"] != TASK or settings.get("limited") or settings.get("device") != "cpu":
            continue
        norm = extra.get("acc_norm") or {}
        if norm.get("mean") is None:
            continue
        mean, stderr, n = float(norm["mean"]), float(norm.get("stderr") or 0.0), int(norm.get("n") or 0)
        precision = precision_name(settings)
        label = settings.get("precision_label") or (
            scheme_for(precision).label if precision in SCHEMES else precision)
        found[(row["model"], precision)] = {
            "acc_norm": mean, "ci_low": max(0.0, mean - 1.96 * stderr),
            "ci_high": min(1.0, mean + 1.96 * stderr), "n": n,
            "label": label}
    return found


def speeds_from(paths: list[Path]) -> dict[tuple[str, str], tuple[float, bool]]:
    """billion's decode tokens/s per (model, precision), and whether the weights were random,
    from benchmarks/decode.py --json files."""
    rows = [r for path in paths for r in json.loads(path.read_text())]
    return {(r["model"], r["precision"]): (r["tok_s"], bool(r.get("random_weights"))) for r in rows
            if r.get("kind") == "ours" and "tok_s" in r}


def kept_speeds() -> dict[tuple[str, str], tuple[float, bool]]:
    """The committed file's decode speeds (quality rows and speed-only rows), as speeds_from gives them."""
    from billion.core.precision import load_speed_only

    kept = {(r.model, r.precision): (r.decode_tok_s, False) for r in load_quality() if r.decode_tok_s}
    kept.update({(r.model, r.precision): (r.decode_tok_s, True) for r in load_speed_only()})
    return kept


def quality_rows_with(quality: dict[tuple[str, str], dict], speeds: dict) -> tuple[QualityRow, ...]:
    return tuple(QualityRow(model=m, precision=p, decode_tok_s=speeds.get((m, p), (None,))[0], **q)
                 for (m, p), q in sorted(quality.items()))


def kept_quality() -> dict[tuple[str, str], dict]:
    """The committed file's quality figures, to pair with new speeds."""
    return {(r.model, r.precision): {k: v for k, v in r.__dict__.items()
                                     if k not in ("model", "precision", "decode_tok_s")}
            for r in load_quality()}


def with_fidelity(quality: dict[tuple[str, str], dict], threads: int) -> None:
    """Add top-1 agreement and KL vs fp32 to every non-fp32 row of the offline models, in place."""
    from billion.bench.tasks import offline_suite_text
    from billion.core import fidelity
    from billion.core.loading import load_fresh
    from billion.core.precision import options_for

    torch.set_num_threads(threads)
    for model in sorted({m for m, _ in quality}):
        precisions = [p for m, p in quality if m == model and p != "fp32"]
        reference = load_fresh(model, options_for("fp32"))
        ids = reference.tokenizer(offline_suite_text(), return_tensors="pt")["input_ids"][0]
        found = fidelity.measure(reference.model, {p: load_fresh(model, options_for(p)).model
                                                   for p in precisions}, ids)
        for precision, result in found.items():
            quality[(model, precision)].update(top1_agreement=result.top1_agreement, mean_kl=result.mean_kl)
            print(f"{model} {precision}: top-1 = fp32 on {result.top1_agreement:.1%} of {result.tokens} "
                  f"tokens, mean KL {result.mean_kl:.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", type=Path, help="a store holding the offline-suite runs")
    parser.add_argument("--keep-quality", action="store_true",
                        help="the committed file's quality rows (with --db: the rows it has no run for)")
    parser.add_argument("--speed", type=Path, nargs="*", default=[],
                        help="benchmarks/decode.py --json outputs")
    parser.add_argument("--keep-speed", action="store_true",
                        help="keep the committed file's speeds (new --speed files override them)")
    parser.add_argument("--out", type=Path, default=QUALITY_FILE)
    parser.add_argument("--note", default="", help="anything a reader must know about the runs")
    parser.add_argument("--fidelity", action="store_true", help="measure next-token agreement with fp32")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for --fidelity")
    args = parser.parse_args()
    if not (args.db or args.keep_quality):
        parser.error("give --db, --keep-quality or both")
    quality = kept_quality() if args.keep_quality else {}
    quality.update(quality_from_store(args.db) if args.db else {})
    if args.fidelity:
        with_fidelity(quality, args.threads)
    speeds = {**(kept_speeds() if args.keep_speed else {}), **speeds_from(args.speed)}
    rows = quality_rows_with(quality, speeds)
    speed_only = tuple(SpeedRow(m, p, tok_s) for (m, p), (tok_s, random_weights) in sorted(speeds.items())
                       if random_weights)
    choice = choose_cpu_precision(rows, speed_only)
    data = {
        "source": "benchmarks/precision_quality.py from `billion bench --tasks offline-mc` runs "
                  "(billion-mc, all items, acc_norm, normal 95% interval) and benchmarks/decode.py",
        "machine": f"{platform.processor() or platform.machine()}, CPU capability "
                   f"{torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}",
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "note": args.note,
        "auto_cpu": {"precision": choice.precision, "reason": choice.reason},
        "rows": [{k: (None if isinstance(v, float) and math.isnan(v) else v)
                  for k, v in r.__dict__.items()} for r in rows],
        "speed_only": [r.__dict__ for r in speed_only]}
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    from billion.core.precision import QUALITY_COLUMNS

    print(format_table(QUALITY_COLUMNS, quality_rows(rows)))
    print(f"auto on CPU: {choice.reason}\nwritten: {args.out}")


if __name__ == "__main__":
    main()
