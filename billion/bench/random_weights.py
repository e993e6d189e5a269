"""Random-weight models with the exact architecture of hub models that are not downloaded: speed only.

Decode speed and memory depend on the architecture (shapes, layer count, vocabulary), not on the
weight values, so a model built from the hub model's config.json with random weights measures
them without the download. Its answers are noise: every row it produces says "random weights:
speed only". The configs live in assets/hub_configs/<alias>.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import replace

import torch

from billion.core import weights
from billion.core.errors import BillionError
from billion.core.loading import LoadedModel, LoadOptions, pick_device, pick_dtype, weight_bytes
from billion.core.paths import ASSETS, cache_dir
from billion.core.quant import quantize_model, release_replaced, scheme_for
from billion.core.quant_cache import cache_key, read_entry
from billion.core.weight_arena import move_to_huge_pages
from billion.core.registry import resolve

log = logging.getLogger(__name__)

CONFIG_DIR = ASSETS / "hub_configs"
LABEL = "random weights: speed only"


class SyntheticTokenizer:
    """Just enough of a tokenizer for speed runs: text -> deterministic ids, ids -> placeholder text."""

    chat_template = None
    bos_token = None
    pad_token_id = 0

    def __init__(self, vocab_size: int, eos_token_id: int | None):
        self.vocab_size, self.eos_token_id = vocab_size, eos_token_id

    def __call__(self, text: str, add_special_tokens: bool = False, return_tensors=None):
        ids = [3 + (sum(map(ord, word)) * 7919) % (self.vocab_size - 3) for word in text.split()]
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else ids}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join("w" for _ in ids)

    def get_vocab(self) -> dict[str, int]:
        return {}

    def __len__(self) -> int:
        return self.vocab_size


def materialize(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Fill meta parameters: matrices uniform with std 0.02, norm weights 1, biases 0; tied stay tied."""
    made: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None or param.device.type != "meta":
                continue
            if id(param) not in made:
                data = torch.empty(param.shape, dtype=param.dtype)
                if param.ndim >= 2:
                    data.uniform_(-0.035, 0.035, generator=generator)  # std 0.02; faster than normal_
                else:
                    data.fill_(0.0 if name == "bias" else 1.0)
                made[id(param)] = torch.nn.Parameter(data, requires_grad=False)
            module._parameters[name] = made[id(param)]
    # Buffers built at init (rotary frequencies): rebuild their module, which computes them.
    for name, module in list(model.named_modules()):
        if any(b is not None and b.device.type == "meta" for b in module._buffers.values()):
            if not hasattr(module, "config"):
                raise BillionError(f"Cannot build {type(module).__name__} of a random-weight model.")
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, type(module)(config=module.config))


def known_configs() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))


def hub_config(alias: str) -> dict:
    """The stored config.json fields of a registry model (no download)."""
    spec = resolve(alias)
    path = CONFIG_DIR / f"{spec.alias}.json"
    if not path.is_file():
        raise BillionError(f"No stored architecture for {spec.alias}: random-weight speed runs know "
                           f"{', '.join(known_configs())} (configs in {CONFIG_DIR}).")
    return {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items()
            if not k.startswith("_")}


def random_model(alias: str, options: LoadOptions = LoadOptions(), seed: int = 0) -> LoadedModel:
    """The model's architecture with seeded random weights, at the options' precision (CPU int8/int4
    through billion.core.quant). Its display name says it is random."""
    from transformers import AutoConfig

    started = time.perf_counter()
    spec = resolve(alias)
    fields = hub_config(alias)
    device = pick_device(options.device)
    if options.quantization != "none" and device.type != "cpu":
        raise BillionError("Random-weight int8/int4 runs use billion's CPU kernels: use device cpu.")
    dtype = pick_dtype(options.dtype, device)
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    if options.quantization != "none":
        name = f"random-{spec.alias}-{key}-s{seed}-{str(dtype).removeprefix('torch.')}"
        model = quantized_random(name, config, dtype, options.quantization, seed)
    else:
        model = float_random(config, dtype, seed).to(device)
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    shown = replace(spec, display_name=f"{spec.display_name} ({LABEL})")
    return LoadedModel(spec=shown, model=model, tokenizer=SyntheticTokenizer(config.vocab_size, eos),
                       device=device, dtype=dtype, quantization=options.quantization,
                       weight_bytes=weight_bytes(model), load_seconds=time.perf_counter() - started,
                       revision=LABEL)


def float_random(config, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # transformers' own init takes 70-90 s for a 1B model here
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    materialize(model, torch.Generator().manual_seed(seed))
    return model.eval()


def quantized_random(name: str, config, dtype: torch.dtype, scheme: str, seed: int) -> torch.nn.Module:
    """A quantized random model, loaded the way a real one is at every start after its first: from
    the quantized cache (billion.core.quant_cache), so speed and memory rows measure that state.
    The first run builds, quantizes and stores it (TinyLlama int4: 0.7 GB on disk)."""
    scheme_for(scheme)
    entry = cache_dir() / "quantized" / f"{name}-{cache_key(scheme)}"
    model = read_entry(entry, str(entry), {}, scheme, dtype, config=config)
    if model is not None:
        return model
    model = quantize_model(float_random(config, dtype, seed), scheme, inplace=True)  # seeded calibration
    try:
        weights.save_quantized(model, entry, {"source": name, "scheme": cache_key(scheme)})
    except OSError as exc:  # a full or read-only disk: this run keeps the model it built
        log.warning("could not cache %s: %s", entry, exc)
        move_to_huge_pages(model)
        return model
    cached = read_entry(entry, str(entry), {}, scheme, dtype, config=config)
    if cached is None:
        move_to_huge_pages(model)
        return model
    del model
    release_replaced()
    return cached
