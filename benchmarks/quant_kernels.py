"""One linear layer at decode (1 x K activations), every CPU weight format we could use, one run.

    .venv/bin/python benchmarks/quant_kernels.py [--threads 2] [--copies 6]

Each cell is ms per call, best of 5 rounds over --copies different weight copies (so the weights
come from memory, not cache, as in a real decode step), and the ratio to fp32 `F.linear`.
The block kernels' columns (billion/core/native.py) appear where they compile, on AVX2 and, where
the CPU has AVX-512 BW + VNNI, on AVX-512 too. torchao columns appear when torchao imports; its weight-only int8 runs eagerly (as transformers'
TorchAoConfig does without torch.compile).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F

from billion.core import native
from billion.core.quant import Int4Linear, Int8Linear
from billion.core.quant_blocks import BlockLinear
from billion.core.table import format_table

SHAPES = ((5632, 2048), (2048, 2048), (1536, 576), (49152, 576))


def best_ms(calls: list) -> float:
    for call in calls:
        call()
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(3):
            for call in calls:
                call()
        best = min(best, (time.perf_counter() - started) / (3 * len(calls)) * 1e3)
    return best


def torchao_layers(weights: list[torch.Tensor]) -> dict[str, list]:
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except Exception as exc:  # not installed, or its ops do not load with this torch
        print(f"torchao: not usable here ({type(exc).__name__}: {str(exc)[:80]})")
        return {}
    layers = []
    for w in weights:
        layer = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
        layer.weight.data = w.clone()
        quantize_(layer, Int8WeightOnlyConfig())
        layers.append(layer)
    return {"torchao int8 w-only": layers}


def row(n: int, k: int, copies: int) -> list:
    weights = [torch.randn(n, k) * 0.02 for _ in range(copies)]
    x, xb = torch.randn(1, k), torch.randn(1, k).bfloat16()
    linears = []
    for w in weights:
        layer = torch.nn.Linear(k, n, bias=False)
        layer.weight.data = w
        linears.append(layer)
    cells: dict[str, float | None] = {}
    cells["fp32"] = best_ms([lambda w=w: F.linear(x, w) for w in weights])
    bf16 = [w.bfloat16() for w in weights]
    cells["bf16"] = best_ms([lambda w=w: F.linear(xb, w) for w in bf16])
    int8 = [(torch.round(w / (s := w.abs().amax(1) / 127)[:, None]).to(torch.int8), s) for w in weights]
    cells["int8pack fp32 act"] = best_ms([lambda q=q: torch._weight_int8pack_mm(x, q[0], q[1]) for q in int8])
    cells["int8pack bf16 act"] = best_ms([lambda q=q: torch._weight_int8pack_mm(xb, q[0], q[1].bfloat16())
                                          for q in int8])
    fbgemm = [Int8Linear.from_linear(layer) for layer in linears]
    cells["billion int8 (fbgemm w8a8)"] = best_ms([lambda m=m: m(x) for m in fbgemm])
    for group in (32, 128):
        cells[f"billion int4 g{group}"] = None  # "-" where rows are not whole groups (columns stay aligned)
        if k % group == 0:
            int4 = [Int4Linear.from_linear(layer, group) for layer in linears]
            cells[f"billion int4 g{group}"] = best_ms([lambda m=m: m(x) for m in int4])
    if native.available():
        for bits in (8, 4):
            blocks = [BlockLinear.from_linear(layer, bits) for layer in linears]
            for avx512 in (False, True):  # the same blocks on both instruction sets, where both run
                isa = native.set_isa(avx512)
                if avx512 and isa != "AVX-512":
                    continue
                cells[f"billion int{bits} blocks ({isa})"] = best_ms([lambda m=m: m(x) for m in blocks])
            native.set_isa(True)
    for name, layers in torchao_layers(weights).items():
        cells[name] = best_ms([lambda m=m: m(x) for m in layers])
    return [f"{n}x{k}", *(f"{v:.3f} ({cells['fp32'] / v:.2f}x)" if v else "-" for v in cells.values())], list(cells)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--copies", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads} threads; ms per call (speed-up vs fp32)")
    rows, header = [], []
    for n, k in SHAPES:
        cells, names = row(n, k, args.copies)
        rows.append(cells)
        header = header or names
    width = max(len(r) for r in rows)
    print(format_table(["N x K", *header][:width], [r + [""] * (width - len(r)) for r in rows]))


if __name__ == "__main__":
    main()
