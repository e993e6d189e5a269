"""Decode speed on CPU at fp32 / bf16 / int8 / int4: billion's loop vs HF `generate` fp32, one run.

    .venv/bin/python benchmarks/decode.py [--models smollm2-135m,gemma3-270m,tinyllama,...]
        [--precisions fp32,bf16,int8,int4] [--prompt-tokens 64] [--new-tokens 32] [--repeats 3]
        [--threads 2] [--json results.json]

Every row runs in its own process (so peak memory is that row's own), in order: for each model,
the reference (HF `generate`, fp32, the same prompt and length, EOS ignored), then billion's
loop at each precision. Timings: 1 warm-up, then the median of --repeats runs; time to first
token is prefill + the first token; decode tokens/s counts the tokens after the first. Peak memory
is the process RSS high-water mark from after loading to the end of the runs. "same as generate"
runs HF `generate` on the very model billion just used (same precision, same quantized layers) and
compares the greedy tokens (billion.core.equivalence). "weights GB/s" is the weight bytes a
decode step reads (all but the input embedding's) times tokens/s. The read ceiling is torch.mv's
fp32 GB/s over 1 GiB here, the better of the run's start and end; "vs HF at read ceiling" is the
ratio a row would reach if its weights streamed at that ceiling with nothing else in the step. A
ratio target above it is out of that format's reach on this host, short of reading memory faster
than torch.mv does. "CPU steal" is the share of the row's timed runs that the hypervisor gave this
VM's CPUs to others (/proc/stat): a row with steal was measured on a busy host. Models with no weights here (tinyllama, llama3.2-1b, stablelm, pythia-1b) are built from their stored config with random
weights: their rows say "random weights: speed only".
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

REAL = ("smollm2-135m", "gemma3-270m")
RANDOM = ("tinyllama", "llama3.2-1b", "stablelm", "pythia-1b")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS


def _peak_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu_ticks() -> tuple[int, int]:
    """(steal, total) clock ticks of all CPUs so far: steal is time the hypervisor gave this VM's
    CPUs to someone else, the sign of a run measured on a busy host."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def _load(model: str, precision: str):
    from billion.bench.random_weights import random_model
    from billion.core.loading import load_fresh
    from billion.core.precision import options_for

    options = options_for(precision)
    return random_model(model, options) if model in RANDOM else load_fresh(model, options)


def _prompt(loaded, tokens: int) -> torch.Tensor:
    from billion.bench.speed import fixed_length_prompt

    return fixed_length_prompt(loaded.tokenizer, tokens, loaded.device)


def _time_generate(model, ids: torch.Tensor, new_tokens: int) -> tuple[float, float]:
    from billion.core.equivalence import hf_greedy

    started = time.perf_counter()
    hf_greedy(model, ids, 1)
    ttft = time.perf_counter() - started
    started = time.perf_counter()
    hf_greedy(model, ids, new_tokens)
    return ttft, (new_tokens - 1) / max(time.perf_counter() - started - ttft, 1e-9)


def _time_ours(loaded, ids: torch.Tensor, new_tokens: int) -> tuple[float, float]:
    from billion.core.generation import stream_ids
    from billion.core.sampling import SamplingSettings

    settings = SamplingSettings(temperature=0, max_new_tokens=new_tokens, ignore_eos=True)
    for update in stream_ids(loaded, ids, settings):
        pass
    return update.result.ttft_s, update.result.decode_tokens_per_s


def streamed_bytes(model: torch.nn.Module) -> int:
    """Weight bytes one decode step reads: all of the model's but the input embedding's (a token
    reads one row of it), unless the LM head is that same table (tied)."""
    from billion.core.loading import weight_bytes

    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    shared = head is not None and {t.data_ptr() for t in embed.parameters()} & {t.data_ptr() for t in head.parameters()}
    return weight_bytes(model) - (0 if shared else weight_bytes(embed))


def read_ceiling(threads: int) -> float:
    """GB/s of the fastest fp32 weight read here: torch.mv (what a 1-token fp32 forward runs) over
    1 GiB, far larger than the cache, best of 5."""
    torch.set_num_threads(threads)
    matrix, x = torch.randn(4096, 65536), torch.randn(65536)
    best = float("inf")
    for _ in range(6):
        started = time.perf_counter()
        torch.mv(matrix, x)
        best = min(best, time.perf_counter() - started)
    return matrix.numel() * 4 / best / 1e9


def child(model: str, kind: str, precision: str, args) -> dict:
    """One row: kind "reference" (HF generate) or "ours", in this process."""
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    loaded = _load(model, precision)
    load_s = time.perf_counter() - started
    ids = _prompt(loaded, args.prompt_tokens)
    timer = _time_generate if kind == "reference" else _time_ours
    target = loaded.model if kind == "reference" else loaded
    timer(target, ids, args.new_tokens)  # warm-up
    _reset_peak()
    steal, total = _cpu_ticks()
    runs = [timer(target, ids, args.new_tokens) for _ in range(args.repeats)]
    steal, total = (now - then for now, then in zip(_cpu_ticks(), (steal, total)))
    row = {"model": model, "kind": kind, "precision": precision, "label": loaded.precision_label,
           "random_weights": model in RANDOM, "load_s": load_s,
           "ttft_s": statistics.median(r[0] for r in runs),
           "tok_s": statistics.median(r[1] for r in runs),
           "tok_s_range": [min(r[1] for r in runs), max(r[1] for r in runs)],
           "peak_bytes": _peak_bytes(), "weight_bytes": loaded.weight_bytes,
           "streamed_bytes": streamed_bytes(loaded.model), "steal": steal / max(total, 1)}
    if kind == "ours" and model in REAL:
        from billion.core.equivalence import compare_greedy

        row["same_as_generate"] = compare_greedy(loaded, ids, args.new_tokens).describe()
    return row


def run_row(model: str, kind: str, precision: str, args) -> dict:
    command = [sys.executable, __file__, "--child", model, kind, precision,
               "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens),
               "--repeats", str(args.repeats), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"model": model, "kind": kind, "precision": precision,
                "error": (done.stderr.strip().splitlines() or ["?"])[-1][:160]}
    return json.loads(lines[-1])


def at_ceiling(r: dict, base: dict | None, ceiling: float | None) -> str:
    """The ratio this row would have if its weights streamed at the read ceiling with nothing else
    in the step: HF's measured time per token over the row's bytes / ceiling. A ratio target above
    it cannot be met on this host by this format."""
    if not (base and ceiling and r.get("streamed_bytes")) or r["kind"] == "reference":
        return ""
    return f"{ceiling * 1e9 / r['streamed_bytes'] / base['tok_s']:.2f}x"


def table(rows: list[dict], ceiling: float | None = None) -> str:
    from billion.core.table import format_table

    reference = {r["model"]: r for r in rows if r["kind"] == "reference" and "error" not in r}
    cells = []
    for r in rows:
        name = f"{r['model']}" + (" (random weights: speed only)" if r.get("random_weights") else "")
        who = "HF generate" if r["kind"] == "reference" else "billion"
        if "error" in r:
            cells.append([name, who, r["precision"], "failed: " + r["error"], *[""] * 9])
            continue
        base = reference.get(r["model"])
        ratio = f"{r['tok_s'] / base['tok_s']:.2f}x" if base else "?"
        cells.append([name, who, r["label"], f"{r['tok_s']:.2f}",
                      f"{r['tok_s_range'][0]:.1f}-{r['tok_s_range'][1]:.1f}", ratio,
                      f"{r['ttft_s']:.3f}", f"{r['peak_bytes'] / 2**20:.0f}",
                      f"{r['weight_bytes'] / 2**20:.0f}",
                      f"{r['streamed_bytes'] * r['tok_s'] / 1e9:.1f}" if "streamed_bytes" in r else "",
                      at_ceiling(r, base, ceiling), f"{r['steal']:.1%}" if "steal" in r else "",
                      r.get("same_as_generate", "")])
    return format_table(["model", "loop", "precision", "decode tok/s", "range", "vs HF fp32",
                         "ttft s", "peak MiB", "weights MiB", "weights GB/s", "vs HF at read ceiling",
                         "CPU steal", "greedy vs generate (same precision)"], cells)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default=",".join(REAL + RANDOM))
    parser.add_argument("--precisions", default="fp32,bf16,int8,int4")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "KIND", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args)), flush=True)
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, {args.threads} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, prompt {args.prompt_tokens} tokens, "
          f"{args.new_tokens} new tokens, median of {args.repeats}", flush=True)
    ceiling = read_ceiling(args.threads)
    print(f"read ceiling: torch.mv fp32 over 1 GiB, {args.threads} threads: {ceiling:.1f} GB/s", flush=True)
    rows = []
    for model in args.models.split(","):
        for kind, precision in [("reference", "fp32")] + [("ours", p) for p in args.precisions.split(",")]:
            rows.append(run_row(model, kind, precision, args))
            print(f"  done: {model} {kind} {precision}", file=sys.stderr, flush=True)
            if args.json:  # after every row, so a stopped run keeps what it measured
                Path(args.json).write_text(json.dumps(rows, indent=1))
    ceiling = max(ceiling, read_ceiling(args.threads))  # the better of the run's start and end
    print(f"read ceiling at the end: best {ceiling:.1f} GB/s (used for the column below)")
    if args.json:
        Path(args.json).write_text(json.dumps([{**r, "read_ceiling_gbs": ceiling} for r in rows], indent=1))
    print(table(rows, ceiling))


if __name__ == "__main__":
    main()
