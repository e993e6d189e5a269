"""Building and loading billion's C kernels, and the fallback when they cannot run."""

import os
import stat
from pathlib import Path

import pytest

from billion.core import native
from billion.core.quant import default_kernel, scheme_for


def test_cpu_flags_decide_support():
    assert native.cpu_supports("processor : 0\nflags : fpu sse2 avx avx2 fma f16c bmi2\n")
    assert not native.cpu_supports("processor : 0\nflags : fpu sse2 avx fma f16c\n")  # no avx2
    assert not native.cpu_supports("processor : 0\n")


@pytest.mark.skipif(not native.cpu_supports(), reason="needs AVX2/FMA/F16C")
def test_build_compiles_once_per_source_version(tmp_path):
    first = native.build(tmp_path)
    mtime = first.stat().st_mtime_ns
    assert native.build(tmp_path) == first and first.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no half-written files left


def test_a_broken_compiler_names_itself(tmp_path, monkeypatch):
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'cc: fatal error: no space' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(fake))
    with pytest.raises(OSError, match="no space"):
        native.build(tmp_path / "out")
    assert not list((tmp_path / "out").iterdir())


@pytest.mark.skipif(not native.cpu_supports(), reason="needs AVX2/FMA/F16C")
def test_a_compiler_without_avx512_still_builds_the_avx2_loops(tmp_path, monkeypatch):
    """An old gcc that cannot target AVX-512 VNNI: the AVX2 loops are built alone, once, and work."""
    import ctypes
    import shutil

    fake = tmp_path / "cc"
    fake.write_text(f"#!/bin/sh\ncase \"$*\" in *{native.NO_AVX512}*) exec {shutil.which('gcc')} \"$@\";; esac\n"
                    "echo 'error: attribute(target(\"avx512vnni\")) is unknown' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CC", str(fake))
    built = native.build(tmp_path / "out")
    assert native.build(tmp_path / "out") == built and [p.name for p in (tmp_path / "out").iterdir()] == [built.name]
    lib = ctypes.CDLL(str(built))
    assert lib.billion_set_isa(1) == 0 and lib.billion_get_isa() == 0  # AVX2, even asked for AVX-512


def test_switched_off_the_torch_kernels_are_used(monkeypatch):
    monkeypatch.setenv("BILLION_NATIVE_KERNELS", "0")
    native.library.cache_clear()
    try:
        assert native.library() is None and default_kernel() == "torch"
        assert scheme_for("int8").kernel == "torch" and "fbgemm" in scheme_for("int8").label
    finally:
        monkeypatch.delenv("BILLION_NATIVE_KERNELS")
        native.library.cache_clear()
    assert (native.library() is not None) == native.cpu_supports() or os.environ.get("CC")


def test_avx512_can_be_switched_off_by_environment(monkeypatch):
    """BILLION_NATIVE_AVX512=0 starts on the AVX2 loops (for A/B runs); the label says which ran."""
    if not native.available():
        pytest.skip("no block kernels here")
    monkeypatch.setenv("BILLION_NATIVE_AVX512", "0")
    native.library.cache_clear()
    try:
        assert native.isa() == "AVX2" and scheme_for("int8").label.endswith("AVX2)")
    finally:
        monkeypatch.delenv("BILLION_NATIVE_AVX512")
        native.library.cache_clear()
    flags = Path("/proc/cpuinfo").read_text()
    has = all(f" {flag}" in flags for flag in ("avx512bw", "avx512vl", "avx512dq", "avx512_vnni"))
    assert native.isa() == ("AVX-512" if has else "AVX2")
    assert scheme_for("int4").label.endswith(f"{native.isa()})")


def test_block_scheme_is_keyed_apart_from_the_torch_one():
    if not native.available():
        pytest.skip("no block kernels here")
    blocks, torch_int8 = scheme_for("int8"), scheme_for("int8", kernel="torch")
    assert blocks.kernel == "blocks" and blocks.key != torch_int8.key
    assert scheme_for("int4", group_size=128).kernel == "torch"  # one group size for the blocks


needs_kernels = pytest.mark.skipif(not native.available(), reason="needs AVX2/FMA/F16C and a C compiler")


def test_speculative_verify_blocks_stay_below_the_gemm_path():
    """A verify block (k drafts + 1) must run the decode steps' kernels, or plain and speculative
    decoding would differ by more than a k+1-token verify's numerics."""
    from billion.spec.decoding import MAX_K

    assert MAX_K + 1 < native.GEMM_ROWS


@needs_kernels
def test_int8_prompts_multiply_dequantized_tiles_and_steps_stay_on_the_integer_kernels():
    """From GEMM_ROWS rows an int8 input is multiplied by the dequantized weight (tiles of GEMM_TILE
    rows, the last one short); below it each row is the integer kernel's, whatever the row count."""
    import torch

    from billion.core.quant_blocks import quantize_blocks

    gen = torch.Generator().manual_seed(0)
    n, k = native.GEMM_TILE * 2 + 40, 256
    blocks = quantize_blocks(torch.randn(n, k, generator=gen) * 0.05, 8)
    x = torch.randn(native.GEMM_ROWS, k, generator=gen)
    prompt = native.block_matmul(blocks, 8, k, x)
    torch.testing.assert_close(prompt, x @ native.dequantize(blocks, 8, k).t(), rtol=1e-5, atol=1e-5)
    steps = torch.cat([native.block_matmul(blocks, 8, k, row[None]) for row in x])
    assert torch.equal(native.block_matmul(blocks, 8, k, x[:-1]), steps[:-1])  # one row short: integer
    torch.testing.assert_close(prompt, steps, rtol=2e-3, atol=2e-3)  # int16 activations: near, not equal
    assert not torch.equal(prompt, steps)


@needs_kernels
@pytest.mark.parametrize("bits, group", [(8, 128), (8, 32), (4, 64), (4, 32)])
@pytest.mark.parametrize("rows", [1, 3, native.GEMM_ROWS])
def test_a_linear_group_equals_its_weights_one_by_one(bits, group, rows):
    """q|k|v in one call: the same numbers as three calls, side by side (the input quantized once)."""
    import torch

    from billion.core.quant_blocks import quantize_blocks

    gen = torch.Generator().manual_seed(0)
    weights = [quantize_blocks(torch.randn(n, 128, generator=gen), bits, group) for n in (64, 32, 200)]
    x = torch.randn(rows, 128, generator=gen)
    one_by_one = torch.cat([native.block_matmul(w, bits, 128, x, group) for w in weights], dim=1)
    assert torch.equal(native.LinearGroup(weights, bits, 128, group)(x), one_by_one)


@needs_kernels
@pytest.mark.parametrize("rows", [1, 4])
def test_rope_kernel_is_bit_identical_to_transformers(rows):
    """In place on the q and k heads of a fused q|k|v row; the v columns stay as they were."""
    import torch
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    gen = torch.Generator().manual_seed(1)
    heads, kv, dim = 6, 2, 16
    qkv = torch.randn(rows, (heads + 2 * kv) * dim, generator=gen)
    angles = torch.rand(rows, dim // 2, generator=gen) * 50
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    q = qkv[:, :heads * dim].view(1, rows, heads, dim).transpose(1, 2)
    k = qkv[:, heads * dim:(heads + kv) * dim].view(1, rows, kv, dim).transpose(1, 2)
    q_ref, k_ref = apply_rotary_pos_emb(q, k, cos[None], sin[None])
    v_before = qkv[:, (heads + kv) * dim:].clone()
    native.rope_(qkv, heads + kv, dim, cos, sin)
    assert torch.equal(qkv[:, :heads * dim].view(1, rows, heads, dim).transpose(1, 2), q_ref)
    assert torch.equal(qkv[:, heads * dim:(heads + kv) * dim].view(1, rows, kv, dim).transpose(1, 2), k_ref)
    assert torch.equal(qkv[:, (heads + kv) * dim:], v_before)


@needs_kernels
@pytest.mark.parametrize("width", [17, 100, 576, 640, 2048, 2049, 5632])
def test_rms_norm_kernel_is_bit_identical_to_torch(width):
    """Widths with and without a scalar tail and a partial group of four vectors, rows at scales
    from 1e-4 to 1e4 (with outliers), two epsilons: every bit equals torch.rms_norm's."""
    import torch

    gen = torch.Generator().manual_seed(width)
    x = torch.randn(9, width, generator=gen) * torch.logspace(-4, 4, 9)[:, None]
    x[::2, ::13] *= 300.0
    weight = torch.randn(width, generator=gen)
    for eps in (1e-5, 1e-6):
        assert native.rms_norm_exact(width, eps)
        assert torch.equal(native.rms_norm(x, weight, eps), torch.rms_norm(x, (width,), weight, eps))
        assert torch.equal(native.rms_norm(x[:1], weight, eps), torch.rms_norm(x[:1], (width,), weight, eps))


@needs_kernels
def test_a_width_where_the_sums_differ_keeps_torch(monkeypatch):
    """Summed in another order (vectors of 16 floats, as if torch's sum kernel changed), the check
    finds the bits differ, and the lean forward's norm falls back to torch.rms_norm."""
    import torch

    from billion.core.lean_forward import rms_norm

    monkeypatch.setattr(native, "SUM_LANES", 16)
    native.rms_norm_exact.cache_clear()
    try:
        assert not native.rms_norm_exact(2048, 1e-5)
        x, weight = torch.randn(3, 2048), torch.randn(2048)
        assert torch.equal(rms_norm(x, weight, 1e-5), torch.rms_norm(x, (2048,), weight, 1e-5))
    finally:
        native.rms_norm_exact.cache_clear()
