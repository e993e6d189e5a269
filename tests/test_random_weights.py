"""Random-weight models with a hub model's architecture: built fast, labelled, speed only."""

from __future__ import annotations

import json

import pytest
import torch

from billion.bench import random_weights
from billion.bench.random_weights import LABEL, hub_config, random_model
from billion.bench.runner import BenchRequest, run_bench
from billion.core.errors import BillionError
from billion.core.loading import LoadOptions
from billion.core.quant import model_scheme
from billion.store.store import Store

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"model_type": "llama", "vocab_size": 320, "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 256, "tie_word_embeddings": True, "eos_token_id": 2}
TINY_NEOX = {"model_type": "gpt_neox", "vocab_size": 320, "hidden_size": 64, "intermediate_size": 256,
             "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 256,
             "rotary_pct": 0.25, "eos_token_id": 0}


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """Tiny architectures under the aliases of two registry models."""
    (tmp_path / "tinyllama.json").write_text(json.dumps({"_source": "test", **TINY}))
    (tmp_path / "pythia-1b.json").write_text(json.dumps(TINY_NEOX))
    monkeypatch.setattr(random_weights, "CONFIG_DIR", tmp_path)
    monkeypatch.setenv("BILLION_CACHE_DIR", str(tmp_path / "cache"))  # quantized random models
    return tmp_path


def test_shipped_configs_have_the_registry_sizes():
    from transformers import AutoConfig, AutoModelForCausalLM

    from billion.core.registry import resolve

    for alias in ("tinyllama", "llama3.2-1b", "stablelm", "pythia-1b"):
        fields = hub_config(alias)
        config = AutoConfig.for_model(fields.pop("model_type"), **fields)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(params_m - resolve(alias).params_m) / resolve(alias).params_m < 0.01, alias


def test_random_model_is_labelled_seeded_and_keeps_ties(configs):
    loaded = random_model("tinyllama")
    assert LABEL in loaded.spec.display_name and loaded.revision == LABEL
    model = loaded.model
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert float(model.lm_head.weight.std()) == pytest.approx(0.02, rel=0.1)
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        first = model(ids).logits
        assert torch.isfinite(first).all()
        assert torch.equal(random_model("tinyllama").model(ids).logits, first)


@pytest.mark.parametrize("alias", ["tinyllama", "pythia-1b"])
@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_random_model_at_cpu_int8_int4(configs, alias, scheme):
    loaded = random_model(alias, LoadOptions(quantization=scheme))
    assert model_scheme(loaded.model).name == scheme and loaded.precision == scheme
    with torch.no_grad():
        assert torch.isfinite(loaded.model(torch.tensor([[5, 6, 7]])).logits).all()


def test_quantized_random_model_is_stored_once_and_read_back(configs, monkeypatch):
    from billion.core.quant_blocks import BlockEmbedding

    first = random_model("tinyllama", LoadOptions(quantization="int4"))
    entries = list((configs / "cache" / "quantized").iterdir())
    assert len(entries) == 1 and entries[0].name.startswith("random-tinyllama-")
    # The first run already returns the model read from its entry, as every later run does.
    assert isinstance(first.model.get_input_embeddings(), BlockEmbedding)
    assert first.model.get_input_embeddings().rows.path == entries[0] / "model.safetensors"

    def no_quantizing(*args, **kwargs):
        raise AssertionError("quantized again instead of reading the cache")

    monkeypatch.setattr(random_weights, "quantize_model", no_quantizing)
    again = random_model("tinyllama", LoadOptions(quantization="int4"))
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        assert torch.equal(again.model(ids).logits, first.model(ids).logits)
    # Another seed or another architecture is another model, not this entry.
    with pytest.raises(AssertionError, match="quantized again"):
        random_model("tinyllama", LoadOptions(quantization="int4"), seed=1)
    (configs / "tinyllama.json").write_text(json.dumps({**TINY, "num_hidden_layers": 3}))
    with pytest.raises(AssertionError, match="quantized again"):
        random_model("tinyllama", LoadOptions(quantization="int4"))


def test_damaged_random_cache_entry_is_rebuilt(configs):
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        first = random_model("tinyllama", LoadOptions(quantization="int8")).model(ids).logits
    # (The model read from the entry maps its file: it is gone before the file is damaged.)
    entry = next((configs / "cache" / "quantized").iterdir())
    (entry / "model.safetensors").write_bytes(b"not safetensors")
    again = random_model("tinyllama", LoadOptions(quantization="int8"))
    with torch.no_grad():
        assert torch.equal(again.model(ids).logits, first)


def test_unknown_architecture_names_the_known_ones(configs):
    with pytest.raises(BillionError, match="tinyllama"):
        hub_config("smollm2-360m")


@pytest.mark.slow  # 25-70 s: the suite stays under 10 minutes; run with -m slow
def test_bench_random_weights_stores_labelled_speed_rows(configs, tmp_path, models):
    store = Store(tmp_path / "b.sqlite3")
    request = BenchRequest(models=("tinyllama",), tasks=("speed",), random_weights=True,
                           quantization="int8", prompt_lengths=(8,), new_tokens=3, warmup=0, repeats=1)
    outcomes = run_bench(request, store=store, models=models)
    assert outcomes[0].ok, outcomes[0].error
    rows = outcomes[0].scores
    assert rows and all(LABEL in r.extra["note"] and r.settings["random_weights"] for r in rows)
    assert rows[0].settings["precision_label"].startswith("int8")
    with pytest.raises(BillionError, match="speed only"):
        BenchRequest(models=("tinyllama",), tasks=("offline-mc",), random_weights=True).validated()
