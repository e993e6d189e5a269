"""Speculative decoding benchmark (not a test): ours vs plain greedy decoding vs Hugging Face's.

Offline, SmolLM2-135M-Instruct target. For each prompt and draft source it runs, one after the
other on a warm model: plain greedy decoding (billion.core.generation), our speculative decoding, and
transformers' assisted generation with the same draft source and k. Prints one table.

    .venv/bin/python benchmarks/speculative.py [--k 10] [--max-new-tokens 192] [--self-layers 6,12,20]

Columns: speedup = our decode tokens/s over plain decode tokens/s (after the first token/round);
wall = plain total time over ours (prefill included); identical = greedy outputs equal (fixed and
dynamic k); accept = accepted/drafted; tok/fwd = tokens per target forward; predicted = Leviathan
et al.'s speedup from measured acceptance and cost ratio; dynamic = decode speedup with dynamic k;
HF wall = plain total time over HF assisted generation's; ours/HF = HF's total time over ours.

Goals (issue 3): with prompt lookup on grounded prompts, decode speedup >= 3.0x over plain greedy
decoding with identical output, and ours/HF >= 1.0 on the same target, k and prompts.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

from billion.core.generation import chat_input_ids  # noqa: E402
from billion.core.loading import load_fresh  # noqa: E402
from billion.spec.race import (EXAMPLE_PROMPTS, build_draft, first_difference, hf_assisted,  # noqa: E402
                          parse_draft, run_plain, run_speculative, warm_up)
from billion.core.sampling import SamplingSettings  # noqa: E402
from billion.spec.decoding import KSchedule  # noqa: E402

GROUNDED = ("repeat", "edit", "answer from text", "summarise", "code edit")
COLUMNS = ("draft", "prompt", "tokens", "plain tok/s", "spec tok/s", "speedup", "wall", "identical",
           "accept", "tok/fwd", "predicted", "dynamic", "HF wall", "ours/HF")


def measure(target, draft_name: str, prompt_name: str, prompt: str, schedule: KSchedule,
            settings: SamplingSettings) -> dict:
    """One prompt and draft: plain, ours (fixed k), ours (dynamic k), HF assisted; one after another."""
    input_ids = chat_input_ids(target, [{"role": "user", "content": prompt}])
    choice = parse_draft(draft_name)
    source = build_draft(target, choice)
    warm_up(target, input_ids, source, settings, schedule)
    plain = run_plain(target, input_ids, settings)
    spec = run_speculative(target, input_ids, source, settings, schedule)
    dynamic = run_speculative(target, input_ids, source, settings, replace(schedule, dynamic=True))
    hf = hf_assisted(target, choice, schedule, settings, input_ids)
    stats = spec.stats
    differ = first_difference(plain.token_ids, spec.token_ids)
    if first_difference(plain.token_ids, dynamic.token_ids) is not None:
        differ = differ if differ is not None else -1
    return {
        "draft": source.name, "prompt": prompt_name, "tokens": len(spec.token_ids),
        "plain tok/s": plain.decode_tokens_per_s, "spec tok/s": spec.decode_tokens_per_s,
        "speedup": spec.decode_tokens_per_s / plain.decode_tokens_per_s,
        "wall": plain.total_s / spec.total_s,
        "identical": "yes" if differ is None else f"NO@{differ}",
        "accept": stats.acceptance_rate, "tok/fwd": stats.tokens_per_target_forward,
        "predicted": stats.predicted_speedup,
        "dynamic": dynamic.decode_tokens_per_s / plain.decode_tokens_per_s,
        "HF wall": plain.total_s / hf.total_s,
        "ours/HF": hf.total_s / spec.total_s,
        "HF same": hf.token_ids == plain.token_ids,
    }


def cell(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        values = [f"{row[c]:.0%}" if c == "accept" else cell(row[c]) for c in COLUMNS]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def geometric_mean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="smollm2-135m")
    parser.add_argument("--k", type=int, default=10, help="tokens drafted per round")
    parser.add_argument("--self-k", type=int, default=4, help="k for self-speculation")
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--self-layers", default="6,12,20", help="N for self:N rows ('' to skip)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    target = load_fresh(args.target)
    settings = SamplingSettings(temperature=0, max_new_tokens=args.max_new_tokens)
    prompts = dict(EXAMPLE_PROMPTS)
    started = time.perf_counter()
    rows = []
    for name, prompt in EXAMPLE_PROMPTS:
        rows.append(measure(target, "prompt-lookup", name, prompt, KSchedule(args.k), settings))
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    for layers in [int(n) for n in args.self_layers.split(",") if n.strip()]:
        for name in ("repeat", "open question"):
            rows.append(measure(target, f"self:{layers}", name, prompts[name], KSchedule(args.self_k),
                                settings))
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    grounded = [r for r in rows if r["draft"] == "prompt lookup" and r["prompt"] in GROUNDED]
    print(f"{target.label}, greedy, max_new_tokens={args.max_new_tokens}, prompt lookup k={args.k}, "
          f"self k={args.self_k}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads; "
          f"{time.perf_counter() - started:.0f} s")
    print(table(rows))
    print(f"\nHF's output equals plain greedy decoding in {sum(r['HF same'] for r in rows)}/{len(rows)} rows.")
    print(f"\nprompt lookup on grounded prompts: decode speedup geometric mean "
          f"{geometric_mean([r['speedup'] for r in grounded]):.2f}x (goal >= 3.0x), best "
          f"{max(r['speedup'] for r in grounded):.2f}x; all identical: "
          f"{all(r['identical'] == 'yes' for r in grounded)}; ours/HF geometric mean "
          f"{geometric_mean([r['ours/HF'] for r in grounded]):.2f} (goal >= 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
