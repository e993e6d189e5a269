"""The block kernels of this checkout against those of a git revision: one model-shaped decode sweep, one run.

    .venv/bin/python benchmarks/kernel_ab.py [--rev HEAD] [--model tinyllama] [--bits 8,4]
        [--isa avx512,avx2] [--threads 2] [--rounds 8] [--int8-group 256]

Builds billion/core/kernels/ as it is in --rev and as it is in the working tree (both with
billion.core.native.build), loads both into this process, and times the matrix calls of one
decode token of --model (its hub config from assets/hub_configs/: per layer q|k|v, o, gate|up,
down, then the LM head; 1 x K activations), each build's sweep alternating with the other's for
--rounds rounds, so both see the same machine. The weights are one set of block rows in memory
(random bytes with valid fp16 scales: the time does not depend on the values), far larger than
the cache on the models this is for, so each sweep streams them from memory as a real token does.
Prints the median ms per sweep, the GB/s of weight read and the working tree's ratio to --rev.
Kernel changes that keep the numerics (prefetch, scheduling) are judged with this.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from billion.core import native
from billion.core.table import format_table

ROOT = Path(__file__).resolve().parent.parent
KERNELS = "billion/core/kernels"


def compile_kernels(source_dir: Path, out_dir: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(native.build(out_dir, source_dir / "qblocks.c")))
    lib.billion_linear_cat.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                       ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int]
    return lib


def sources_at(rev: str, into: Path) -> Path:
    into.mkdir()
    names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", f"{rev}:{KERNELS}"],
                           check=True, capture_output=True, text=True).stdout.split()
    for name in names:
        blob = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{KERNELS}/{name}"],
                              check=True, capture_output=True).stdout
        (into / name).write_bytes(blob)
    return into


#: int8's group (--int8-group): 256, the hub models' layout; 32 to compare with revisions before groups
INT8_GROUP = [native.Q8_GROUP]


def _group(bits: int) -> int:
    return INT8_GROUP[0] if bits == 8 else native.Q4_GROUP  # int4 in groups of 64, the hub models' layout


def block_rows(n: int, k: int, bits: int) -> torch.Tensor:
    """n rows of k values in the kernels' layout: fp16 scales (int4: and minimums) of 0.01, random values."""
    group = _group(bits)
    rows = torch.randint(0, 256, (n, native.row_bytes(bits, k, group)), dtype=torch.uint8)
    scales = (2 if bits == 8 else 4) * (k // group)
    rows[:, :scales].view(torch.float16).fill_(0.01)
    return rows


class Call:
    """One billion_linear_cat call: weights that share an input, side by side."""

    def __init__(self, shapes: list[tuple[int, int]], bits: int):
        self.bits, self.k = bits, shapes[0][1]
        self.weights = [block_rows(n, k, bits) for n, k in shapes]
        self.ptrs = (ctypes.c_void_p * len(shapes))(*(w.data_ptr() for w in self.weights))
        self.ns = (ctypes.c_int64 * len(shapes))(*(n for n, _ in shapes))
        self.x = torch.randn(1, self.k)
        self.y = torch.empty(1, sum(n for n, _ in shapes))

    def __call__(self, lib: ctypes.CDLL, threads: int) -> None:
        lib.billion_linear_cat(self.bits, native._shift(self.bits, _group(self.bits)), len(self.weights), self.ptrs, self.ns, self.k,
                               self.x.data_ptr(), 1, self.y.data_ptr(), threads)


def token_calls(model: str, bits: int) -> list[Call]:
    config = json.loads((ROOT / "assets" / "hub_configs" / f"{model}.json").read_text())
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    dim = config.get("head_dim") or hidden // heads
    calls = []
    for _ in range(config["num_hidden_layers"]):
        calls += [Call([(heads * dim, hidden), (kv_heads * dim, hidden), (kv_heads * dim, hidden)], bits),
                  Call([(hidden, heads * dim)], bits), Call([(inner, hidden), (inner, hidden)], bits),
                  Call([(hidden, inner)], bits)]
    return calls + [Call([(config["vocab_size"], hidden)], bits)]


def sweep_ms(calls: list[Call], lib: ctypes.CDLL, threads: int) -> float:
    started = time.perf_counter()
    for call in calls:
        call(lib, threads)
    return (time.perf_counter() - started) * 1e3


def compare(libs: dict[str, ctypes.CDLL], calls: list[Call], threads: int, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in libs}
    for name, lib in libs.items():  # warm-up: pages touched, threads started
        sweep_ms(calls, lib, threads)
    for _ in range(rounds):
        for name, lib in libs.items():
            times[name].append(min(sweep_ms(calls, lib, threads) for _ in range(2)))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rev", default="HEAD")
    parser.add_argument("--model", default="tinyllama")
    parser.add_argument("--bits", default="8,4")
    parser.add_argument("--isa", default="avx512,avx2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--int8-group", type=int, default=native.Q8_GROUP,
                        help="32 to compare with revisions from before int8 groups")
    args = parser.parse_args()
    INT8_GROUP[0] = args.int8_group
    if not native.cpu_supports():
        sys.exit("this CPU lacks AVX2/FMA/F16C: the block kernels do not run here")
    with tempfile.TemporaryDirectory() as work:
        base = sources_at(args.rev, Path(work) / "rev")
        libs = {args.rev: compile_kernels(base, Path(work) / "built"),
                "working tree": compile_kernels(ROOT / KERNELS, Path(work) / "built")}
        rows = []
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.model} shapes, {args.threads} threads, "
              f"median of {args.rounds} interleaved rounds (best of 2 sweeps each)")
        for bits in (int(b) for b in args.bits.split(",")):
            calls = token_calls(args.model, bits)
            gigabytes = sum(w.numel() for call in calls for w in call.weights) / 1e9
            for isa in args.isa.split(","):
                on = {name: lib.billion_set_isa(int(isa == "avx512")) for name, lib in libs.items()}
                if isa == "avx512" and not all(on.values()):
                    print(f"int{bits} {isa}: this CPU lacks AVX-512 BW/VNNI, skipped")
                    continue
                ms = compare(libs, calls, args.threads, args.rounds)
                rows.append([f"int{bits}", isa, f"{gigabytes * 1e3:.0f}"]
                            + [f"{ms[name]:.1f} ({gigabytes / ms[name] * 1e3:.1f} GB/s)" for name in libs]
                            + [f"{ms[args.rev] / ms['working tree']:.2f}x"])
            del calls
    print(format_table(["weights", "loops", "MB per token", f"{args.rev} ms", "working tree ms", "speedup"], rows))


if __name__ == "__main__":
    main()
