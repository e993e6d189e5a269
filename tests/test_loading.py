import threading

import pytest
import torch

from billion.core.availability import available, available_all
from billion.core.errors import BillionError
from billion.core.loading import LoadOptions, ModelCache, pick_dtype
from billion.core.registry import resolve


def test_load_local_dir(tiny_dir, models):
    loaded = models.load(str(tiny_dir))
    assert loaded.spec.source.kind == "local"
    assert loaded.device.type == "cpu" and loaded.dtype == torch.float32
    assert loaded.weight_bytes == sum(p.numel() * 4 for p in loaded.model.parameters()) + sum(
        b.numel() * b.element_size() for b in loaded.model.buffers())
    assert loaded.context_length == 512


def test_concurrent_loads_share_one_copy(tiny_dir):
    cache = ModelCache(budget_bytes=2**30)
    spec = resolve(str(tiny_dir))
    results, errors = [], []

    def worker():
        try:
            results.append(cache.get(spec, LoadOptions(dtype="bf16")))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r is results[0] for r in results)
    assert len(cache.loaded()) == 1 and results[0].dtype == torch.bfloat16


def test_lru_eviction_keeps_budget(tiny_dir):
    spec = resolve(str(tiny_dir))
    one = ModelCache(2**30).get(spec, LoadOptions(dtype="fp32")).weight_bytes
    cache = ModelCache(budget_bytes=int(one * 1.6))
    first = cache.get(spec, LoadOptions(dtype="fp32"))
    second = cache.get(spec, LoadOptions(dtype="bf16"))  # half the size: both fit
    assert len(cache.loaded()) == 2
    cache.get(spec, LoadOptions(dtype="fp32"))  # touch: bf16 becomes least recently used
    # A third model (another key) needs room: least recently used go first, the new one stays.
    third = cache.get(spec, LoadOptions(dtype="fp32", device="cpu"))
    assert cache.used_bytes() <= cache.budget_bytes
    assert cache.loaded() == [third] and third is not first


def test_dtype_rules():
    cpu = torch.device("cpu")
    assert pick_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(BillionError, match="fp16"):
        pick_dtype("fp16", cpu)
    with pytest.raises(BillionError, match="Unknown dtype"):
        pick_dtype("fp8", cpu)


def test_bad_options_and_paths(tmp_path, models):
    with pytest.raises(BillionError, match="quantization"):
        models.load("smollm2-135m", LoadOptions(quantization="int3"))  # type: ignore[arg-type]
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(BillionError, match="corrupt|GGUF"):
        models.load(str(broken))
    with pytest.raises(BillionError, match="Unknown model"):
        models.load("definitely-not-a-model")


def test_offline_hub_model_says_what_to_do(models):
    # conftest sets HF_HUB_OFFLINE=1 for every test
    with pytest.raises(BillionError, match="offline model|unreachable"):
        models.load("pythia-160m")


def test_gated_without_token_is_explained(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # no stored token, empty hub cache
    status = available(resolve("llama3.2-1b"))
    assert not status.ok and "HF_TOKEN" in status.reason


def test_available_lists_every_entry_with_reason():
    rows = available_all()  # offline (conftest): hub models are not in a test machine's cache
    assert {r.spec.alias for r in rows} >= {"smollm2-135m", "gemma3-270m", "tinyllama"}
    assert all(r.reason for r in rows)
    offline = {r.spec.alias: r for r in rows}
    assert offline["smollm2-135m"].ok  # the weight package is installed by setup
    assert not offline["tinyllama"].ok


def test_int8_and_int4_on_cpu_use_billions_kernels(tiny_dir, tmp_path, monkeypatch, models):
    from billion.core.quant import model_scheme

    monkeypatch.setenv("BILLION_CACHE_DIR", str(tmp_path))  # the quantized cache goes there
    base = models.load(str(tiny_dir))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.inference_mode():
        reference = base.model(ids).logits
        for quant in ("int8", "int4"):
            loaded = models.load(str(tiny_dir), LoadOptions(quantization=quant))
            assert loaded.quantization == quant and model_scheme(loaded.model).name == quant
            assert loaded.precision == quant and quant in loaded.label
            assert loaded.weight_bytes < base.weight_bytes
            logits = loaded.model(ids).logits.float()
            # Quantized logits stay close to fp32: the argmax mostly agrees.
            agree = (logits.argmax(-1) == reference.argmax(-1)).float().mean()
            assert torch.isfinite(logits).all() and agree >= 0.5, (quant, agree)
