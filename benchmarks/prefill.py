"""Prompt processing (time to first token's forward) at int8: the integer kernels against the
dequantized-tile GEMM path (billion.core.native.GEMM_ROWS), with transformers' fp32 forward as the
reference, in one process.

    .venv/bin/python benchmarks/prefill.py [--models tinyllama,smollm2-135m] [--tokens 64,256] [--threads 2] [--rounds 3]

Per model and prompt length: one forward of the prompt with logits for its last position (what
generation does before the first token), median of --rounds interleaved rounds of the three: HF
fp32 (transformers' forward, the same weights unquantized), billion int8 with every prompt on the
integer kernels (GEMM_ROWS set past the prompt), and billion int8 as shipped. tinyllama and
llama3.2-1b are random weights of the hub configs (speed only).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

RANDOM = ("tinyllama", "llama3.2-1b", "stablelm", "pythia-1b")


def _load(model: str, precision: str):
    from billion.bench.random_weights import random_model
    from billion.core.loading import load_fresh
    from billion.core.precision import options_for

    options = options_for(precision)
    return random_model(model, options) if model in RANDOM else load_fresh(model, options)


def _prefill_s(model, ids: torch.Tensor, lean: bool, gemm_rows: int) -> float:
    from billion.core import lean_forward, native
    from billion.core.generation import forward
    from billion.core.kv_cache import new_cache

    lean_forward.ENABLED, native.GEMM_ROWS = lean, gemm_rows
    started = time.perf_counter()
    forward(model, ids, new_cache(), keep=1)
    return time.perf_counter() - started


def rows_for(model_name: str, lengths: list[int], rounds: int) -> list[list[str]]:
    from billion.bench.speed import fixed_length_prompt
    from billion.core import native

    shipped = native.GEMM_ROWS
    reference, ours = _load(model_name, "fp32"), _load(model_name, "int8")
    rows = []
    with torch.inference_mode():
        for length in lengths:
            ids = fixed_length_prompt(ours.tokenizer, length, torch.device("cpu"))
            runs = {"fp32": (reference.model, False, shipped), "integer": (ours.model, True, length + 1),
                    "tiles": (ours.model, True, shipped)}
            for model, lean, gemm in runs.values():
                _prefill_s(model, ids, lean, gemm)  # warm-up
            times = {name: [] for name in runs}
            for _ in range(rounds):
                for name, (model, lean, gemm) in runs.items():
                    times[name].append(_prefill_s(model, ids, lean, gemm))
            fp32, integer, tiles = (statistics.median(times[k]) for k in ("fp32", "integer", "tiles"))
            label = model_name + (" (random weights)" if model_name in RANDOM else "")
            rows.append([label, str(length), f"{fp32:.3f}", f"{integer:.3f}", f"{tiles:.3f}",
                         f"{integer / tiles:.2f}x", f"{fp32 / tiles:.2f}x"])
    native.GEMM_ROWS = shipped
    return rows


def main() -> None:
    from billion.core import native
    from billion.core.table import format_table

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="tinyllama,smollm2-135m")
    parser.add_argument("--tokens", default="64,256")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lengths = [int(n) for n in args.tokens.split(",")]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, {args.threads} threads, "
          f"{native.isa()} kernels, int8 prompts of >= {native.GEMM_ROWS} rows through dequantized tiles; "
          f"median of {args.rounds} interleaved rounds, seconds per prompt forward", flush=True)
    rows = [row for model in args.models.split(",") for row in rows_for(model, lengths, args.rounds)]
    print(format_table(["model", "prompt tokens", "HF fp32 s", "int8 integer kernels s", "int8 tiles s",
                        "tiles vs integer", "tiles vs HF fp32"], rows))


if __name__ == "__main__":
    main()
