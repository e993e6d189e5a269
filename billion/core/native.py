"""billion's block-quantized CPU kernels (kernels/qblocks.c), compiled on first use and called by ctypes.

Why our own: on an AVX2 CPU PyTorch's int4 kernel is compute-bound and fbgemm's int8 needs
activation smoothing (docs/benchmarks/decode.md). The C file is ~400 lines of AVX2 intrinsics over
block layouts like llama.cpp's (int8 in groups of 256 where rows allow), plus AVX-512 (BW + VNNI)
loops (kernels/qblocks_avx512.h) chosen at run time where the CPU has them; gcc builds it in about a second into ~/.cache/billion/kernels/, keyed
by the sources' hash. Where there is no compiler or no AVX2/FMA/F16C, `library()` is None and the
PyTorch kernels are used instead (BILLION_NATIVE_KERNELS=0 forces that).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

from billion.core.paths import cache_dir

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "qblocks.c"  # includes qblocks_avx512.h
FLAGS = ("-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp", "-shared", "-fPIC")
CPU_FLAGS = ("avx2", "fma", "f16c")
#: built without the AVX-512 loops (qblocks_avx512.h) where the compiler cannot target them
NO_AVX512 = "-DBILLION_NO_AVX512"
QK = 32
#: int4 groups (one fp16 scale and minimum each): 64 by default, 32 for GGUF-grid weights
Q4_GROUPS = (64, 32)
Q4_GROUP = Q4_GROUPS[0]
#: int8 groups (one fp16 scale each): 256 by default (8.06 bits a weight, and the integer sums run
#: over a whole group: docs/benchmarks/decode.md), the largest that divides a shorter row, 32 (llama.cpp's
#: Q8_0 blocks) for GGUF-grid weights
Q8_GROUPS = (256, 128, 64, 32)
Q8_GROUP = Q8_GROUPS[0]
#: bytes per block of 32: weights int4 in groups of 32 (fp16 scale + fp16 min + 16 bytes), int8
#: in blocks of 32 (fp16 scale + 32), int4's activations (fp32 scale + fp32 scaled sum + 32)
BLOCK_BYTES = {4: 20, 8: 34, "act": 40}
_i64, _int, _ptr = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p


def groups(bits: int) -> tuple[int, ...]:
    return Q4_GROUPS if bits == 4 else Q8_GROUPS


def default_group(bits: int) -> int:
    return Q4_GROUP if bits == 4 else Q8_GROUP


def fitting_group(bits: int, k: int, group: int | None = None) -> int | None:
    """The group a row of k values takes: `group` (default: the kernels') where it divides k; for
    int8 else the largest smaller one that does (576-wide rows: 64); None where none does."""
    wanted = group or default_group(bits)
    sizes = [g for g in groups(bits) if g <= wanted] if bits == 8 else [wanted]
    return next((g for g in sizes if k % g == 0), None)


def row_bytes(bits: int, k: int, group: int | None = None) -> int:
    """Bytes of one weight row of k values: int8 32 per block of 32 and 2 (fp16 scale) per group;
    int4 16 per block of 32 and 4 (fp16 scale and minimum) per group."""
    group = group or default_group(bits)
    if bits == 8:
        return k + 2 * (k // group)
    return k // QK * (QK // 2) + 4 * (k // group)


def _shift(bits: int, group: int) -> int:
    """The kernels' group argument: groups of 32 << shift."""
    if group not in groups(bits):
        raise ValueError(f"int{bits} groups of {group}: the kernels take {groups(bits)}")
    return (group // QK).bit_length() - 1


def cpu_supports(cpuinfo: str | None = None) -> bool:
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags")), [])
    return all(flag in flags for flag in CPU_FLAGS)


def build(target_dir: Path, source: Path = SOURCE) -> Path:
    """Compile the kernels (once per source version) and return the shared library's path. Where the
    compiler cannot target AVX-512 VNNI (an old gcc), the AVX2 loops are built alone. `source`: another
    copy of kernels/qblocks.c with its headers beside it (benchmarks/kernel_ab.py builds old ones)."""
    sources = b"".join(path.read_bytes() for path in sorted(source.parent.iterdir()) if path.suffix in (".c", ".h"))
    digest = {flags: hashlib.sha256(sources + " ".join(flags).encode()).hexdigest()[:16]
              for flags in (FLAGS, (*FLAGS, NO_AVX512))}
    variants = [(flags, target_dir / f"qblocks-{digest[flags]}.so") for flags in digest]
    built = next((target for _, target in variants if target.is_file()), None)
    if built is not None:
        return built
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        raise OSError("no C compiler (gcc) on PATH")
    target_dir.mkdir(parents=True, exist_ok=True)
    error = ""
    for flags, target in variants:
        with tempfile.TemporaryDirectory(dir=target_dir) as work:  # atomic: concurrent builds never see half a file
            partial = Path(work) / target.name
            done = subprocess.run([compiler, *flags, "-o", str(partial), str(source)],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                os.replace(partial, target)
                return target
            error = done.stderr.strip()[-400:]
    raise OSError(f"{compiler} failed: {error}")


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    lib.billion_set_isa.argtypes = [_int]
    lib.billion_get_isa.argtypes = []
    lib.billion_q4_dequantize.argtypes = [_ptr, _i64, _i64, _int, _ptr, _int]
    lib.billion_q8_dequantize.argtypes = [_ptr, _i64, _i64, _int, _ptr, _int]
    lib.billion_linear.argtypes = [_int, _int, _ptr, _i64, _i64, _ptr, _i64, _ptr, _int]
    lib.billion_linear_cat.argtypes = [_int, _int, _int, _ptr, _ptr, _i64, _ptr, _i64, _ptr, _int]
    lib.billion_rope.argtypes = [_ptr, _i64, _i64, _i64, _i64, _i64, _ptr, _ptr]
    lib.billion_rms_norm.argtypes = [_ptr, _ptr, _ptr, _i64, _i64, ctypes.c_float, _int]
    lib.billion_block_sizes.argtypes = [_int]
    lib.billion_swiglu.argtypes = [_ptr, _i64, _i64, _ptr]
    lib.billion_llama_layer.argtypes = [_ptr, _ptr, _i64, _i64, _ptr, _ptr, _ptr, _ptr, _i64, _int]
    if (lib.billion_block_sizes(4), lib.billion_block_sizes(8), lib.billion_block_sizes(0)) != \
            (BLOCK_BYTES[4], BLOCK_BYTES[8], BLOCK_BYTES["act"]):
        raise OSError("the compiled block layouts differ from the Python side's")
    return lib


@lru_cache(maxsize=1)
def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None where they cannot run here (why is logged)."""
    if os.environ.get("BILLION_NATIVE_KERNELS", "1") == "0":
        return None
    if not cpu_supports():
        log.info("native kernels off: the CPU lacks one of %s", CPU_FLAGS)
        return None
    try:
        lib = _declare(ctypes.CDLL(str(build(cache_dir() / "kernels"))))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("native kernels unavailable (%s): using PyTorch's int8/int4 kernels", exc)
        return None
    lib.billion_set_isa(int(os.environ.get("BILLION_NATIVE_AVX512", "1") != "0"))
    return lib


def available() -> bool:
    return library() is not None


def set_isa(avx512: bool) -> str:
    """Run the AVX-512 loops (where the CPU has AVX-512 BW/VNNI) or the AVX2 ones, for every later
    call in this process; returns isa(). BILLION_NATIVE_AVX512=0 starts a process on AVX2."""
    library().billion_set_isa(int(avx512))
    return isa()


def isa() -> str:
    """The instruction set the kernels run on here: "AVX-512" or "AVX2" ("none" without kernels)."""
    lib = library()
    if lib is None:
        return "none"
    return "AVX-512" if lib.billion_get_isa() else "AVX2"


def _threads() -> int:
    return max(1, torch.get_num_threads())


#: int8 inputs of at least this many rows (prompts) multiply the weight dequantized to fp32 a tile
#: of GEMM_TILE rows at a time with BLAS instead of the integer kernels: the int8 loops have no
#: multi-row form (int4's reads four rows per weight load), so a prompt cost each row a pass of
#: integer work. Measured here (2 threads, 11264 x 2048 and 2048 x 5632 int8): 32 rows alike,
#: 48 rows 1.2x faster, 128 rows 1.9-2.0x, 256 rows 2.4-3.2x. Fewer rows (decode steps,
#: speculative verify blocks: at most MAX_K + 1, tested) keep the integer kernels, the same as
#: the one-token steps a verify block is compared with; int4's x4 loops win up to 128 rows and
#: stay. The tile (256 rows: 2-6 MB of floats) stays in cache between its dequantization and use.
GEMM_ROWS, GEMM_TILE = 48, 256


def _dequantized_matmul(blocks: list[torch.Tensor], bits: int, k: int, x: torch.Tensor, group: int) -> torch.Tensor:
    """x (rows, k) times the weights side by side, through fp32 tiles and BLAS (see GEMM_ROWS)."""
    y = torch.empty(x.shape[0], sum(b.shape[0] for b in blocks), dtype=torch.float32)
    column = 0
    for weight in blocks:
        for start in range(0, weight.shape[0], GEMM_TILE):
            tile = dequantize(weight[start:start + GEMM_TILE], bits, k, group)
            y[:, column:column + tile.shape[0]] = x @ tile.t()
            column += tile.shape[0]
    return y


def block_matmul(blocks: torch.Tensor, bits: int, k: int, x: torch.Tensor, group: int | None = None) -> torch.Tensor:
    """x (rows, k) float32 contiguous times the (n, k) block-quantized weight's transpose: (rows, n)."""
    n, rows, group = blocks.shape[0], x.shape[0], group or default_group(bits)
    if bits == 8 and rows >= GEMM_ROWS:
        return _dequantized_matmul([blocks], bits, k, x, group)
    y = torch.empty(rows, n, dtype=torch.float32)
    if library().billion_linear(bits, _shift(bits, group), blocks.data_ptr(), n, k, x.data_ptr(), rows,
                                y.data_ptr(), _threads()):
        raise MemoryError(f"no memory for the int8 activations of a {rows} x {k} input")
    return y


def dequantize(blocks: torch.Tensor, bits: int, k: int, group: int | None = None) -> torch.Tensor:
    """The (n, k) float32 weight the blocks stand for."""
    out = torch.empty(blocks.shape[0], k, dtype=torch.float32)
    shift = _shift(bits, group or default_group(bits))
    dequantize_call = library().billion_q4_dequantize if bits == 4 else library().billion_q8_dequantize
    dequantize_call(blocks.data_ptr(), blocks.shape[0], k, shift, out.data_ptr(), _threads())
    return out


class LinearGroup:
    """Weights of one input side by side (q|k|v, gate|up): x (rows, k) float32 contiguous ->
    (rows, sum of their n), with x quantized once and one parallel loop (kernels/qblocks.c).
    The pointer arrays are built once; the blocks must stay alive (the caller's modules hold them)."""

    def __init__(self, blocks: list[torch.Tensor], bits: int, k: int, group: int | None = None):
        self.group = group or default_group(bits)
        self.bits, self.k, self.shift = bits, k, _shift(bits, self.group)
        self.total = sum(b.shape[0] for b in blocks)
        self._keep = blocks
        self._ptrs = (ctypes.c_void_p * len(blocks))(*(b.data_ptr() for b in blocks))
        self._ns = (ctypes.c_int64 * len(blocks))(*(b.shape[0] for b in blocks))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits == 8 and x.shape[0] >= GEMM_ROWS:
            return _dequantized_matmul(self._keep, self.bits, self.k, x, self.group)
        y = torch.empty(x.shape[0], self.total, dtype=torch.float32)
        if library().billion_linear_cat(self.bits, self.shift, len(self._keep), self._ptrs, self._ns, self.k,
                                        x.data_ptr(), x.shape[0], y.data_ptr(), _threads()):
            raise MemoryError(f"no memory for the int8 activations of a {x.shape[0]} x {self.k} input")
        return y


def rope_(x: torch.Tensor, heads: int, dim: int, cos: torch.Tensor, sin: torch.Tensor,
          head_stride: int | None = None) -> None:
    """Rotary embedding in place on `heads` heads of each row of x (rows, ...), float32 with unit
    column stride, head h at column h * head_stride (default dim), on its first dim values (partial
    rotary: dim < head_stride); cos/sin (rows, dim) contiguous. Bit-identical to transformers'
    apply_rotary_pos_emb (kernels/qblocks.c says why)."""
    if x.shape[0] and (heads - 1) * (head_stride or dim) + dim > x.shape[1]:
        raise ValueError(f"{heads} heads of {dim} every {head_stride or dim} columns exceed a row of {x.shape[1]}")
    library().billion_rope(x.data_ptr(), x.shape[0], x.stride(0), heads, head_stride or dim, dim,
                           cos.data_ptr(), sin.data_ptr())


#: floats per vector in torch's sum kernel: 8 even where torch runs AVX-512 kernels (ATen does not
#: dispatch its sum to an AVX-512 build; here 8 matches torch's bits and 16 does not, both tested)
SUM_LANES = 8


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """torch.rms_norm(x, (n,), weight, eps) for float32 x (rows, n) and weight (n,), contiguous, in
    one C call (kernels/rms_norm.h says why). Callers check rms_norm_exact(n, eps) first."""
    y = torch.empty_like(x)
    library().billion_rms_norm(x.data_ptr(), weight.data_ptr(), y.data_ptr(), x.shape[0], x.shape[1], eps, SUM_LANES)
    return y


@lru_cache(maxsize=None)
def rms_norm_exact(n: int, eps: float) -> bool:
    """Whether the C RMSNorm gives torch.rms_norm's bits for rows of n floats here: checked once per
    width on rows of many scales (and outliers), since the sum's order is torch's to change."""
    if library() is None:
        return False
    generator = torch.Generator().manual_seed(n)
    x = torch.randn(12, n, generator=generator) * torch.logspace(-4, 4, 12)[:, None]
    x[::3, ::97] *= 1000.0
    weight = torch.randn(n, generator=generator)
    same = torch.equal(rms_norm(x, weight, eps), torch.rms_norm(x, (n,), weight, eps))
    if not same:
        log.info("C RMSNorm differs from torch.rms_norm at width %d: using torch's", n)
    return same


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up from gate|up side by side (rows, 2 * inter) float32 contiguous, as the fused
    layers compute it (their own exp: kernels/llama_layer.h)."""
    rows, inter = gate_up.shape[0], gate_up.shape[1] // 2
    out = torch.empty(rows, inter, dtype=torch.float32)
    library().billion_swiglu(gate_up.data_ptr(), rows, inter, out.data_ptr())
    return out


class LlamaLayer(ctypes.Structure):
    """kernels/llama_layer.h's struct billion_llama_layer: one Llama decoder layer's weights (int8 or int4
    blocks) and shapes, for llama_layer() (lean_fused.py builds them; it keeps the tensors alive)."""

    _fields_ = [("w", _ptr * 7), ("in_norm", _ptr), ("post_norm", _ptr),
                ("hidden", _i64), ("heads", _i64), ("kv_heads", _i64), ("head_dim", _i64), ("inter", _i64),
                ("bits", ctypes.c_int32), ("gs_in", ctypes.c_int32), ("gs_o", ctypes.c_int32),
                ("gs_down", ctypes.c_int32), ("eps", ctypes.c_float), ("scale", ctypes.c_float),
                ("lanes", ctypes.c_int32)]


def llama_layer(layer: LlamaLayer, x: torch.Tensor, start: int, cos: torch.Tensor, sin: torch.Tensor,
                keys: torch.Tensor, values: torch.Tensor) -> None:
    """x (rows, hidden) float32 contiguous through one decoder layer in place (kernels/llama_layer.h),
    its keys and values written into the cache buffers (1, kv_heads, room, head_dim) at start.."""
    if library().billion_llama_layer(ctypes.byref(layer), x.data_ptr(), x.shape[0], start, cos.data_ptr(),
                                     sin.data_ptr(), keys.data_ptr(), values.data_ptr(), keys.shape[2], _threads()):
        raise MemoryError(f"no memory for a decoder layer's scratch on {x.shape[0]} rows")
