"""Speculative decoding benchmark (not a test): plain vs ours vs Hugging Face's assisted generation.

Offline, SmolLM2-135M-Instruct target. Four tables:

1. verify cost: a forward over m new tokens against a 1-token step, at each precision (interleaved);
2. prompt lookup on grounded prompts (copy: repeat, edit, rewrite, fix typos, code edit, code
   rename; grounded: answer from text, summarise), at fp32 and at the fast precision;
3. quantized self-draft (the target at int8 / int4 drafting for itself at fp32) on open questions;
4. drafts through text: Gemma-3-270M for SmolLM2-135M and SmolLM2-135M for Gemma-3-270M.

In each row, after a warm-up, `--reps` rounds of: plain decoding, ours, HF's assisted generation
with the same draft source and k (interleaved, so a busy machine slows them alike); the table shows
medians. Greedy; every output is checked against plain decoding.

    .venv/bin/python benchmarks/speculative.py [--threads 1] [--reps 3] [--quick]

Columns: speedup = our decode tokens/s over plain's (after the first token/round); HF speedup = HF's
decode tokens/s over plain's (HF's time to the first token measured by the same call cut to one
token, and subtracted); ours/HF = our decode tokens/s over HF's; ours/HF wall = HF's whole-call time
over ours (prefill included, which both pay alike); same = greedy output
identical to plain (numerics = parted only at a near-tie, see billion.spec.numerics); accept =
accepted/drafted; tok/fwd = tokens per target forward; k = mean tokens drafted per round; c_v = a
verify forward's time over a plain step, measured in the row.

Goals (issue 16): prompt lookup on the copy prompts (edit/repeat kind) >= 2.5x decode over plain at
the same precision; quantized self-draft on the open questions: acceptance >= 70% and >= 1.5x over
plain fp32; ours >= 1.2x HF geo-mean on the same pairs and k; every greedy output identical.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from billion.core.generation import chat_input_ids  # noqa: E402
from billion.core.loading import LoadOptions  # noqa: E402
from billion.core.model_cache import ModelCache  # noqa: E402
from billion.core.sampling import SamplingSettings  # noqa: E402
from billion.spec.cost import measure_forward_costs  # noqa: E402
from billion.spec.decoding import KSchedule  # noqa: E402
from billion.spec.numerics import diagnose  # noqa: E402
from billion.spec.prompts import PROMPT_CASES  # noqa: E402
from billion.spec.quant_draft import quantized_copy  # noqa: E402
from billion.spec.race import (build_draft, first_difference, parse_draft, reference_run,  # noqa: E402
                               run_plain, run_speculative, verify_cost_ratio, warm_up)
from billion.spec.verifier import verifier  # noqa: E402

COLUMNS = ("draft", "prompt", "kind", "tokens", "plain tok/s", "speedup", "HF speedup", "ours/HF",
           "ours/HF wall", "same", "accept", "tok/fwd", "k", "c_v")
SIZES = (1, 2, 3, 5, 9, 11, 17)
#: the copy prompts that edit or repeat a prose text (the issue's "edit/repeat prompts"); the code
#: prompts are reported with them and apart
TEXT_EDITS = ("repeat", "edit", "rewrite", "fix typos")
#: the benchmark's models (targets and draft models) load once, from here
MODELS = ModelCache(24 << 30)


def load_model(name: str, options: LoadOptions = LoadOptions()):
    return MODELS.load(name, options)


def measure(target, draft_name: str, case, k: int, settings: SamplingSettings, reps: int) -> dict:
    """One prompt and draft source: warm-up, then `reps` interleaved rounds of plain, ours and HF."""
    input_ids = chat_input_ids(target, [{"role": "user", "content": case.text}])
    built = build_draft(target, parse_draft(draft_name), MODELS)
    race_target = dataclasses.replace(target, model=verifier(target.model))
    schedule = KSchedule(k)
    warm_up(race_target, input_ids, built.source, settings, schedule)
    plains, specs, refs = [], [], []
    for _ in range(reps):
        plains.append(run_plain(race_target, input_ids, settings))
        specs.append(run_speculative(race_target, input_ids, built.source, settings, schedule))
        refs.append(reference_run(race_target, built, schedule, settings, input_ids))
    plain, spec = plains[-1], specs[-1]
    differ = first_difference(plain.token_ids, spec.token_ids)
    same = "yes"
    if differ is not None:
        verdict = diagnose(race_target.model, input_ids[0].tolist(), plain.token_ids, spec.token_ids,
                           spec.rounds, differ)
        same = f"numerics@{differ}" if verdict is not None and verdict.numerics else f"NO@{differ}"
    if any(r.token_ids != plain.token_ids for r in refs):
        same += " (HF differs)"
    median = statistics.median
    plain_rate = median(p.decode_tokens_per_s for p in plains)
    spec_rate = median(s.decode_tokens_per_s for s in specs)
    hf_rate = median(r.decode_tokens_per_s for r in refs)
    stats = spec.stats
    return {
        "draft": built.source.name, "prompt": case.name, "kind": case.kind, "tokens": len(spec.token_ids),
        "plain tok/s": plain_rate, "speedup": spec_rate / plain_rate, "HF speedup": hf_rate / plain_rate,
        "ours/HF": spec_rate / hf_rate if hf_rate else float("nan"),
        "ours/HF wall": median(r.total_s for r in refs) / median(s.total_s for s in specs),
        "same": same, "accept": stats.acceptance_rate, "tok/fwd": stats.tokens_per_target_forward,
        "k": stats.mean_k, "c_v": median(verify_cost_ratio(p, s) for p, s in zip(plains, specs)),
    }


def cell(column: str, value) -> str:
    if column == "accept":
        return f"{value:.0%}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(c, row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines)


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def verify_costs(models: dict[str, torch.nn.Module], context: int, repeats: int) -> str:
    lines = ["| precision | " + " | ".join(f"{m} tok" for m in SIZES) + " |", "|" + "---|" * (len(SIZES) + 1)]
    for name, model in models.items():
        costs = measure_forward_costs(model, SIZES, context=context, repeats=repeats)
        cells = [f"{costs[0].seconds * 1000:.0f} ms"] + [f"{c.ratio:.2f}×" for c in costs[1:]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_rows(target, drafts: list[str], cases, k: int, settings, reps: int) -> list[dict]:
    rows = []
    for draft in drafts:
        for case in cases:
            rows.append(measure(target, draft, case, k, settings, reps))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    return rows


def summary(name: str, rows: list[dict], goal: float | None = None) -> str:
    if not rows:
        return ""
    speed = geometric_mean([r["speedup"] for r in rows])
    ours_hf = geometric_mean([r["ours/HF"] for r in rows])
    wall = geometric_mean([r["ours/HF wall"] for r in rows])
    identical = sum(r["same"].startswith("yes") for r in rows)
    numerics = sum(r["same"].startswith("numerics") for r in rows)
    accepts = [r["accept"] for r in rows]
    goal_text = f" (goal >= {goal}x)" if goal else ""
    return (f"- {name}: decode speedup geo-mean {speed:.2f}x{goal_text}; ours/HF geo-mean {ours_hf:.2f} "
            f"decode, {wall:.2f} wall (goal >= 1.2); acceptance {min(accepts):.0%}-{max(accepts):.0%}; "
            f"identical to plain: {identical}/{len(rows)}, parted by numerics at a near-tie: {numerics}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="smollm2-135m")
    parser.add_argument("--k", type=int, default=10, help="prompt lookup: most tokens drafted per round")
    parser.add_argument("--quant-k", type=int, default=10,
                        help="quantized self-draft: most tokens per round (its own rule stops it earlier)")
    parser.add_argument("--cross-k", type=int, default=4, help="drafts through text: tokens per round")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions per row (medians)")
    parser.add_argument("--fast", default="int8", help="the fast precision to compare with fp32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    parser.add_argument("--quick", action="store_true", help="one repetition, fewer prompts")
    parser.add_argument("--sections", default="cost,lookup,quant,cross")
    return parser.parse_args()


def cost_section(args, fp32, fast) -> list[str]:
    models = {"fp32 (packed verifier)": verifier(fp32.model), "fp32 (MKL, as loaded)": fp32.model,
              "bf16": load_model(args.target, LoadOptions(dtype="bf16")).model, fast.label: fast.model,
              "int8 draft copy": quantized_copy(fp32.model, "int8", fp32.tokenizer),
              "int4 draft copy": quantized_copy(fp32.model, "int4", fp32.tokenizer, fp32.spec.quant_group)}
    return ["", "### Verify cost: forward over m new tokens / 1-token step (256 cached tokens)", "",
            verify_costs(models, 256, 3 if args.quick else 7)]


def lookup_section(args, targets, cases, settings, reps, goals: list[str]) -> list[str]:
    out = []
    for target in targets:
        rows = run_rows(target, ["prompt-lookup"], cases, args.k, settings, reps)
        out += ["", f"### Prompt lookup, k <= {args.k}, target {target.label}", "", table(rows)]
        goals += [summary(f"prompt lookup, text edit/repeat prompts ({', '.join(TEXT_EDITS)}), {target.label}",
                          [r for r in rows if r["prompt"] in TEXT_EDITS], 2.5),
                  summary(f"prompt lookup, all copy prompts (text and code), {target.label}",
                          [r for r in rows if r["kind"] == "copy"], 2.5),
                  summary(f"prompt lookup, all grounded prompts, {target.label}", rows)]
    return out


def quant_section(args, fp32, cases, settings, reps, goals: list[str]) -> list[str]:
    rows = run_rows(fp32, ["quant:int8", "quant:int4"], cases, args.quant_k, settings, reps)
    goals += [summary(f"{d} self-draft, open questions, vs plain fp32", [r for r in rows if r["draft"] == d], 1.5)
              for d in ("quant:int8", "quant:int4")]
    return ["", f"### Quantized self-draft, k <= {args.quant_k}, verifier {fp32.label}", "", table(rows)]


def cross_section(args, fp32, settings, reps, goals: list[str]) -> list[str]:
    gemma = load_model("gemma3-270m")
    cases = [c for c in PROMPT_CASES if c.name in ("repeat", "open question")]
    rows = run_rows(fp32, ["gemma3-270m"], cases, args.cross_k, settings, reps)
    rows += run_rows(gemma, ["smollm2-135m"], cases, args.cross_k, settings, reps)
    goals.append(summary("drafts through text", rows))
    return ["", f"### Drafts through text (another tokenizer), k = {args.cross_k}", "", table(rows)]


def main() -> int:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = 1 if args.quick else args.reps
    sections = set(args.sections.split(","))
    settings = SamplingSettings(temperature=0, max_new_tokens=args.max_new_tokens)
    started = time.perf_counter()
    fp32 = load_model(args.target, LoadOptions(dtype="fp32"))
    fast = load_model(args.target, LoadOptions(quantization=args.fast) if args.fast in ("int8", "int4")
                      else LoadOptions(dtype=args.fast))
    grounded = [c for c in PROMPT_CASES if c.kind in ("copy", "grounded")]
    open_cases = [c for c in PROMPT_CASES if c.kind == "open"]
    if args.quick:
        grounded, open_cases = grounded[:3] + grounded[-1:], open_cases[:2]
    out = [f"{fp32.spec.alias}, greedy, max_new_tokens={args.max_new_tokens}, medians of {reps} interleaved "
           f"runs; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
           f"{torch.__version__} with {torch.get_num_threads()} threads"]
    goals: list[str] = []
    print("\n".join(out), flush=True)  # each section as it completes: a late failure loses nothing
    runs = {"cost": lambda: cost_section(args, fp32, fast),
            "lookup": lambda: lookup_section(args, (fp32, fast), grounded, settings, reps, goals),
            "quant": lambda: quant_section(args, fp32, open_cases, settings, reps, goals),
            "cross": lambda: cross_section(args, fp32, settings, reps, goals)}
    for name, run in runs.items():
        if name in sections:
            print("\n".join(run()), flush=True)
    print("\n".join(["", "### Goals", "", *[g for g in goals if g], "",
                     f"{time.perf_counter() - started:.0f} s in all"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
