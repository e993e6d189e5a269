"""One decode step: billion's lean forward (Llama, Gemma-3, GPT-NeoX) against transformers' forward on the same model, one run.

    .venv/bin/python benchmarks/lean_forward.py [--models smollm2-135m,gemma3-270m,tinyllama] [--precisions fp32,int8,int4]
        [--threads 2] [--steps 30] [--rounds 3]

Per model and precision (each in its own process): a --prompt-tokens prompt (64), then --steps one-token
steps with each forward, the two interleaved --rounds times (so both see the same machine); the
median per-step time of each, their ratio, and the time in the matrix kernels alone (the same
step's projections called on their own), so the rest is the work around them. Where a Llama model's
layers run as one C call each (int8 / int4: billion.core.lean_fused), "fused ms" is that, and "lean
ms" the lean forward's own layers (lean_fused off), interleaved with the rest. The lean layers are
checked to give transformers' logits bit for bit before timing; the fused ones' largest logit
difference is reported (relative to the largest logit). tinyllama, llama3.2-1b, stablelm, pythia-1b are random weights of the
hub configs (speed only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

RANDOM = ("tinyllama", "llama3.2-1b", "stablelm", "pythia-1b")


def _load(model: str, precision: str):
    from billion.bench.random_weights import random_model
    from billion.core.loading import load_fresh
    from billion.core.precision import options_for

    options = options_for(precision)
    return random_model(model, options) if model in RANDOM else load_fresh(model, options)


def _step_ms(model, lean: bool, steps: int, prompt: int, fused: bool = False) -> float:
    from billion.core import lean_forward, lean_fused
    from billion.core.generation import forward
    from billion.core.kv_cache import new_cache

    lean_forward.ENABLED, lean_fused.ENABLED = lean, fused
    cache = new_cache()
    forward(model, torch.arange(100, 100 + prompt)[None], cache, keep=1)
    token = torch.tensor([[5]])
    forward(model, token, cache, keep=1)
    started = time.perf_counter()
    for _ in range(steps):
        forward(model, token, cache, keep=1)
    return (time.perf_counter() - started) / steps * 1e3


def _kernels_ms(plan, hidden: int, steps: int) -> float:
    x, attended = torch.randn(1, hidden), torch.randn(1, plan.heads * plan.head_dim)  # Gemma: not hidden wide
    started = time.perf_counter()
    for _ in range(steps):
        for layer in plan.layers:
            layer.qkv(x)
            layer.o(attended)
            if not hasattr(layer, "gate_up"):  # GPT-NeoX / StableLM plans hold the MLP whole (with its activation)
                layer.mlp(x)
                continue
            gate_up = layer.gate_up(x)
            layer.down(gate_up[:, :gate_up.shape[1] // 2].contiguous())
        plan.lm_head(x)
    return (time.perf_counter() - started) / steps * 1e3


def row(model_name: str, precision: str, steps: int, rounds: int, prompt: int = 64) -> dict:
    from billion.core import lean_forward, lean_fused
    from billion.core.generation import forward
    from billion.core.kv_cache import new_cache

    loaded = _load(model_name, precision)
    model = loaded.model
    plan = lean_forward.plan_for(model)
    if plan is None:
        return {"model": model_name, "precision": precision, "note": "no lean forward for this model (architecture or device)"}
    ids = torch.arange(100, 140)[None]
    fusable = getattr(plan, "fused", None) is not None
    with torch.inference_mode():
        lean_forward.ENABLED, lean_fused.ENABLED = False, False
        forward(model, ids, new_cache())  # a process's first transformers forward of Pythia's prompt
        reference = forward(model, ids, new_cache())  # sometimes differs from all later ones (not ours)
        lean_forward.ENABLED = True
        same = bool(torch.equal(forward(model, ids, new_cache()), reference))
        lean_fused.ENABLED = True
        fused_diff = float((forward(model, ids, new_cache()) - reference).abs().max() / reference.abs().max())
        times = {"hf": [], "lean": [], "fused": [], "kernels": []}
        for _ in range(rounds):
            times["hf"].append(_step_ms(model, False, steps, prompt))
            times["lean"].append(_step_ms(model, True, steps, prompt))
            if fusable:
                times["fused"].append(_step_ms(model, True, steps, prompt, fused=True))
            times["kernels"].append(_kernels_ms(plan, model.config.hidden_size, steps))
    hf, lean, kernels = (statistics.median(times[k]) for k in ("hf", "lean", "kernels"))
    fused = statistics.median(times["fused"]) if fusable else None
    return {"model": model_name, "precision": loaded.precision_label, "hf_ms": hf, "lean_ms": lean,
            "fused_ms": fused, "fused_diff": fused_diff if fusable else None,
            "kernels_ms": kernels, "speedup": hf / (fused or lean), "same_logits": same}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="smollm2-135m,tinyllama")
    parser.add_argument("--precisions", default="fp32,int8,int4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--row", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.row:
        model, precision = args.row.split(":")
        print(json.dumps(row(model, precision, args.steps, args.rounds, args.prompt_tokens)))
        return
    from billion.core.table import format_table

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
          f"{args.threads} threads, {args.prompt_tokens}-token prompt, {args.steps} steps x {args.rounds} interleaved rounds, median")
    rows = []
    for model in args.models.split(","):
        for precision in args.precisions.split(","):
            done = subprocess.run([sys.executable, __file__, "--row", f"{model}:{precision}",
                                   "--threads", str(args.threads), "--steps", str(args.steps),
                                   "--prompt-tokens", str(args.prompt_tokens),
                                   "--rounds", str(args.rounds)], capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{model} {precision}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    table = [[r["model"] + (" (random weights)" if r["model"] in RANDOM else ""), r["precision"],
              f"{r['hf_ms']:.1f}", f"{r['lean_ms']:.1f}", _or(r["fused_ms"], "{:.1f}"),
              _or(r["fused_ms"] and r["lean_ms"] / r["fused_ms"], "{:.2f}x"), f"{r['speedup']:.2f}x",
              f"{r['kernels_ms']:.1f}", f"{r['hf_ms'] - r['kernels_ms']:.1f}",
              f"{(r['fused_ms'] or r['lean_ms']) - r['kernels_ms']:.1f}",
              "yes" if r["same_logits"] else "NO", _or(r["fused_diff"], "{:.1e}")] for r in rows if "hf_ms" in r]
    print(format_table(["model", "precision", "HF forward ms", "lean ms", "fused ms", "fused vs lean",
                        "ours vs HF", "kernels ms", "HF rest ms", "our rest ms", "lean = HF logits",
                        "fused logit diff"], table))


def _or(value, form: str) -> str:
    return "" if value is None else form.format(value)


if __name__ == "__main__":
    main()
