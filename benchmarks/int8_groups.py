"""int8 groups of 32 vs 256, on 4 KiB pages vs huge pages: decode kernel speed and quality cost, one run.

    .venv/bin/python benchmarks/int8_groups.py [--speed-only | --quality-only] [--rounds 8] [--threads 2]

Speed: one TinyLlama-shaped token's matrix calls (22 x q|k|v, o, gate|up, down, then the LM head),
each layout in its own copy of random weights, all called in turn for --rounds rounds (so every
layout sees the same machine), against torch's fp32 F.linear over the same shapes (the reference:
what HF's fp32 decode step runs); median ms and GB/s of weight read, and ratios as the median of
each round's ratio (to fp32, and to int8 g32 on 4 KiB pages, the layout before groups).

Quality: the offline models at fp32 against int8 copies with groups of 32, 64, 128 and 256 (rows a
group does not divide take the largest that does: SmolLM2's 576-wide rows 64, Gemma's 640-wide 128),
teacher-forced over the offline suite's text: top-1 agreement with fp32 and mean KL
(billion.core.fidelity). The offline GGUF weights lie on a grid of 32, which groups of 32 keep; the
app keeps 32 for them (registry.quant_group), so these rows price groups of 256 on real weights.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from billion.core import native
from billion.core.table import format_table

SHAPES = ((2560, 2048), (2048, 2048), (11264, 2048), (2048, 5632))  # TinyLlama: q|k|v, o, gate|up, down
LAYERS, VOCAB, HIDDEN = 22, 32000, 2048


def _int8_layers(group: int, huge: bool) -> list[torch.nn.Module]:
    from torch import nn

    from billion.core.quant_blocks import BlockLinear
    from billion.core.weight_arena import move_to_huge_pages

    model = nn.ModuleList()
    for n, k in (*SHAPES * LAYERS, (VOCAB, HIDDEN)):
        linear = nn.Linear(k, n, bias=False)
        nn.init.normal_(linear.weight, std=0.02)
        model.append(BlockLinear.from_linear(linear, 8, group))
    if huge and not move_to_huge_pages(model):
        raise SystemExit("no transparent huge pages here (THP 'never' or not Linux): run without them")
    return list(model)


def _time(call, layers) -> float:
    inputs = {k: torch.randn(1, k) for k in (2048, 5632)}
    started = time.perf_counter()
    for layer in layers:
        call(layer, inputs[layer.in_features if hasattr(layer, "in_features") else layer.shape[1]])
    return time.perf_counter() - started


def speed(rounds: int) -> None:
    from billion.core.weight_arena import huge_pages_available

    variants = {f"int8 g{g}, {'huge' if huge else '4 KiB'} pages": (g, huge)
                for g in (32, 256) for huge in (False, True) if huge_pages_available() or not huge}
    layers = {name: _int8_layers(g, huge) for name, (g, huge) in variants.items()}
    fp32 = [torch.randn(n, k) * 0.02 for n, k in (*SHAPES * LAYERS, (VOCAB, HIDDEN))]
    nbytes = {name: sum(m.blocks.numel() for m in ms) for name, ms in layers.items()}
    nbytes["fp32 F.linear (reference)"] = sum(w.numel() * 4 for w in fp32)
    times: dict[str, list[float]] = {name: [] for name in nbytes}
    for _ in range(rounds):
        times["fp32 F.linear (reference)"].append(_time(lambda w, x: F.linear(x, w), fp32))
        for name, ms in layers.items():
            times[name].append(_time(lambda m, x: m(x), ms))
    # ratios per round, then their median: both sides of a ratio ran back to back, so a slow
    # stretch of the host moves both (this VM's memory bandwidth drifts by 20% within minutes)
    first = next(iter(layers))
    rows = []
    for name, spent in times.items():
        median = statistics.median(spent)
        vs_fp32 = statistics.median(f / t for f, t in zip(times["fp32 F.linear (reference)"], spent))
        vs_first = statistics.median(b / t for b, t in zip(times[first], spent))
        rows.append([name, f"{nbytes[name] / 1e6:.0f}", f"{median * 1e3:.1f}",
                     f"{nbytes[name] / median / 1e9:.1f}", f"{vs_fp32:.2f}x", f"{vs_first:.3f}x"])
    print(format_table(["weights", "MB per token", "ms per token", "GB/s", "vs fp32", f"vs {first}"], rows))


def quality() -> None:
    from billion.bench.tasks import offline_suite_text
    from billion.core import fidelity
    from billion.core.loading import load_fresh
    from billion.core.precision import options_for
    from billion.core.quant import quantize_model

    rows = []
    for alias in ("smollm2-135m", "gemma3-270m"):
        reference = load_fresh(alias, options_for("fp32"))
        ids = reference.tokenizer(offline_suite_text(), return_tensors="pt")["input_ids"][0]
        copies = {g: quantize_model(reference.model, "int8", group_size=g) for g in native.Q8_GROUPS}
        found = fidelity.measure(reference.model, copies, ids)
        for group, result in sorted(found.items()):
            bits = sum(m.blocks.numel() for m in copies[group].modules() if hasattr(m, "blocks")
                       and type(m).__name__ == "BlockLinear") * 8 / sum(
                m.in_features * m.out_features for m in copies[group].modules() if type(m).__name__ == "BlockLinear")
            rows.append([alias, f"{group}", f"{bits:.3f}", f"{result.top1_agreement:.2%}", f"{result.mean_kl:.5f}",
                         str(result.tokens)])
    print(format_table(["model", "int8 group", "bits a weight", "top-1 = fp32", "mean KL", "tokens"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed-only", action="store_true")
    parser.add_argument("--quality-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
          f"{args.threads} threads, kernels {native.isa()}")
    if not args.quality_only:
        speed(args.rounds)
    if not args.speed_only:
        quality()


if __name__ == "__main__":
    main()
