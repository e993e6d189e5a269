"""Loading models: any alias, hub id, local folder or .gguf, on the best device, into a ModelCache.

The app holds one ModelCache (billion.context.AppContext.models); `models.load(name, options)`
loads a model or hands back the copy already loaded.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from billion.core.errors import BillionError
from billion.core.registry import ModelSpec, resolve
from billion.core import quant_cache, weights
from billion.core.download_jobs import DownloadRegistry, ensure_local
from billion.core.quant import model_scheme, release_replaced, scheme_for
from billion.core.weight_arena import move_to_huge_pages

log = logging.getLogger(__name__)

#: int8/int4: billion's kernels on CPU, bitsandbytes on CUDA; nf4: bitsandbytes' 4-bit anywhere
#: (QLoRA trains on it, on CPU too: billion's CPU kernels have no backward pass)
Quantization = Literal["none", "int8", "int4", "nf4"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OFFLINE_HINT = "pick an offline model (smollm2-135m, gemma3-270m) or connect to the internet"


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. Part of the cache key: two option sets are two cached models."""

    #: "auto" (cuda, then mps, then cpu), or a torch device string
    device: str = "auto"
    #: "auto", "fp32", "bf16" or "fp16"
    dtype: str = "auto"
    #: int8/int4 weights: billion's kernels on CPU (billion.core.quant), bitsandbytes on CUDA;
    #: "nf4": bitsandbytes' 4-bit on any device (the QLoRA base)
    quantization: Quantization = "none"
    #: path of a PEFT LoRA adapter to apply on top
    adapter: str | None = None


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    quantization: str
    weight_bytes: int
    load_seconds: float
    revision: str = ""
    adapter: str | None = None

    @property
    def context_length(self) -> int:
        config = self.model.config
        for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
            value = getattr(config, name, None) or getattr(getattr(config, "text_config", None), name, None)
            if value:
                return int(value)
        return self.spec.context_length

    @property
    def precision(self) -> str:
        """Short name: fp32, bf16, fp16, int8 or int4."""
        if self.quantization != "none":
            return self.quantization
        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(
            self.dtype, str(self.dtype).removeprefix("torch."))

    @property
    def precision_label(self) -> str:
        """What runs, for every place speed is shown: "int8 (w8a8 per-token, fbgemm)", "bf16"..."""
        scheme = model_scheme(self.model)
        if scheme is not None:
            return scheme.label
        if self.quantization == "int8":
            return "int8 (bitsandbytes LLM.int8)"
        if self.quantization in ("int4", "nf4"):
            return "int4 (bitsandbytes nf4)"
        return self.precision

    @property
    def label(self) -> str:
        return f"{self.spec.alias} ({self.precision_label}, {self.device.type})"


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise BillionError("CUDA was requested but no CUDA GPU is visible: use device 'auto' or 'cpu'.")
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name in DTYPES:
        dtype = DTYPES[name]
        if dtype == torch.float16 and device.type == "cpu":
            raise BillionError("fp16 is slow and lossy on CPU: use fp32 or bf16 there.")
        return dtype
    if name != "auto":
        raise BillionError(f"Unknown dtype '{name}': use auto, fp32, bf16 or fp16.")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    # CPU: fp32 stays the default so greedy outputs match across batch shapes (the race's lossless
    # check, benchmark comparisons); bf16 decodes ~1.5x faster on AMX CPUs and is one option away
    # (docs/benchmarks/generation.md).
    return torch.float32


def quantization_config(quantization: str, device: torch.device, dtype: torch.dtype):
    if quantization == "none":
        return None
    if quantization not in ("int8", "int4", "nf4"):
        raise BillionError(f"Unknown quantization '{quantization}': use none, int8 or int4.")
    if device.type == "mps":
        raise BillionError("bitsandbytes int8/int4 does not run on Apple MPS: use quantization 'none'.")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except Exception as exc:
        raise BillionError(f"{quantization} needs bitsandbytes ({exc}): `pip install bitsandbytes`, "
                           "or use quantization 'none'.") from exc
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                              bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True)


def weight_bytes(model: torch.nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    packed = sum(m.packed_bytes() for m in model.modules() if hasattr(m, "packed_bytes"))
    return sum(t.numel() * t.element_size() for t in tensors) + packed


def hf_token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token
        return get_token()
    except Exception:
        return None


def weights_location(spec: ModelSpec, downloads: DownloadRegistry | None = None) -> tuple[str, dict[str, Any]]:
    """Folder or hub id that from_pretrained reads, plus hub keyword arguments.

    downloads: the app's shared downloads, which a hub model not cached yet joins (None: its own)."""
    source = spec.source
    if source.kind == "package_gguf":
        return str(weights.ensure_converted(weights.package_gguf_path(spec))), {}
    if source.kind == "local":
        path = Path(source.location)
        if path.suffix == ".gguf":
            if not path.is_file():
                raise BillionError(f"{path} does not exist: check the path.")
            return str(weights.ensure_converted(path)), {}
        return str(path), {}
    # The snapshot folder in the hub cache, downloaded first (one shared download) when missing.
    return str(ensure_local(spec, downloads)), {}


def _explain_load_error(spec: ModelSpec, location: str, exc: Exception) -> BillionError:
    """A load that failed on files already here: say which files, and what to do about them."""
    detail = f"{type(exc).__name__}: {str(exc)[:300]}"
    if weights.discard_converted(Path(location)):  # a cache billion rebuilds from the GGUF
        return BillionError(f"The converted weights of {spec.alias} in {location} could not be read "
                            f"({detail}). That damaged cache was removed: send the request again "
                            "and billion rebuilds it from the GGUF (about 20-40 s).")
    if spec.source.kind == "hub":
        return BillionError(f"Could not load {spec.hub_id} from the Hugging Face cache ({detail}): "
                            f"its cached files may be damaged: check them with `python -m billion "
                            f"download {spec.alias}` (it fetches what is missing or wrong).")
    if not Path(location).exists():
        return BillionError(f"{location} no longer exists: put the model folder back or pick another model.")
    return BillionError(f"Could not load {location} ({detail}): check that the folder holds config.json, "
                        "the tokenizer and the weights, or pick another model.")


def load_fresh(name: str | ModelSpec, options: LoadOptions = LoadOptions(),
               downloads: DownloadRegistry | None = None) -> LoadedModel:
    """A private copy outside the shared cache (training attaches LoRA in place, so it needs one)."""
    spec = _spec(name)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    device = pick_device(options.device)
    dtype = pick_dtype(options.dtype, device)
    # int8/int4 on CPU go through billion's kernels (billion.core.quant), bitsandbytes elsewhere.
    cpu_quant = options.quantization not in ("none", "nf4") and device.type == "cpu"
    if cpu_quant:
        scheme_for(options.quantization)  # an unknown scheme fails before the weights are read
    quant = None if cpu_quant else quantization_config(options.quantization, device, dtype)
    group = spec.quant_group if cpu_quant else None
    location, hub_kwargs = weights_location(spec, downloads)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **hub_kwargs)
        model = None
        if cpu_quant and not options.adapter:
            model = quant_cache.try_load_cached(location, hub_kwargs, options.quantization, dtype, group)
        if model is None:
            kwargs: dict[str, Any] = {"dtype": dtype, **hub_kwargs}
            if quant is not None:
                kwargs.update(quantization_config=quant, device_map={"": str(device)})
            model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except BillionError:
        raise
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise BillionError(f"Not enough memory to load {spec.alias} in {dtype}: pick a smaller model, "
                           "int8/int4, or unload others (lower BILLION_MODEL_BUDGET_GB).") from exc
    except Exception as exc:  # damaged files raise many types (OSError, ValueError, SafetensorError)
        raise _explain_load_error(spec, location, exc) from exc
    if quant is None:
        model.to(device)
    model.eval()
    # A hub model loads from its snapshot folder, which is named after the commit.
    snapshot = Path(location).name if spec.source.kind == "hub" else ""
    revision = getattr(model.config, "_commit_hash", None) or snapshot or spec.source.revision or ""
    if options.adapter:
        model = _apply_adapter(model, options.adapter)
        if cpu_quant:  # LoRA folded into the float weights, then quantized with them
            model = model.merge_and_unload()
    if cpu_quant and model_scheme(model) is None:
        model = _quantize_first_start(model, tokenizer, options, location, hub_kwargs, dtype, group)
        release_replaced()  # the in-memory copy, where the stored entry replaced it
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer, device=device, dtype=dtype,
                       quantization=options.quantization, weight_bytes=weight_bytes(model),
                       load_seconds=time.perf_counter() - started, revision=revision,
                       adapter=options.adapter)


def _quantize_first_start(model, tokenizer, options: LoadOptions, location: str, hub_kwargs: dict[str, Any],
                          dtype: torch.dtype, group: int | None):
    """Quantize a float CPU model and store it; the first start then runs as every later one, on
    the stored entry (its weights on huge pages)."""
    entry = None if options.adapter else quant_cache.cache_entry(location, hub_kwargs, options.quantization, group)
    model = quant_cache.quantize_and_store(model, tokenizer, options.quantization, entry, location, group)
    cached = quant_cache.try_load_cached(location, hub_kwargs, options.quantization, dtype, group) \
        if entry is not None else None
    if cached is None:
        move_to_huge_pages(model)
    return cached or model


def _apply_adapter(model, adapter: str):
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise BillionError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json).")
    return PeftModel.from_pretrained(model, adapter).eval()


def __getattr__(name: str):
    # The cache moved to billion.core.model_cache; older imports from here keep working.
    if name in ("ModelCache", "Reservation"):
        from billion.core import model_cache

        return getattr(model_cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _spec(name: str | ModelSpec) -> ModelSpec:
    return resolve(name) if isinstance(name, str) else name


def _key(spec: ModelSpec, options: LoadOptions) -> tuple:
    return (spec.alias, spec.source, options)


def _estimate_bytes(spec: ModelSpec, options: LoadOptions) -> int:
    per_param = {"int8": 1, "int4": 0.5, "nf4": 0.5}.get(options.quantization,
                                              2 if options.dtype in ("bf16", "fp16") else 4)
    return int(spec.params_m * 1e6 * per_param)
