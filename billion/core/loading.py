"""Loading models: any alias, hub id, local folder or .gguf, on the best device, into a ModelCache.

The app holds one ModelCache (billion.context.AppContext.models); `models.load(name, options)`
loads a model or hands back the copy already loaded.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from billion.core.errors import BillionError
from billion.core.registry import ModelSpec, resolve
from billion.core import weights
from billion.core.download_jobs import DownloadRegistry, ensure_local

log = logging.getLogger(__name__)

Quantization = Literal["none", "int8", "int4"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OFFLINE_HINT = "pick an offline model (smollm2-135m, gemma3-270m) or connect to the internet"


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model. Part of the cache key: two option sets are two cached models."""

    #: "auto" (cuda, then mps, then cpu), or a torch device string
    device: str = "auto"
    #: "auto", "fp32", "bf16" or "fp16"
    dtype: str = "auto"
    #: weight quantization through bitsandbytes
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
    def label(self) -> str:
        quant = "" if self.quantization == "none" else f" {self.quantization}"
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{self.spec.alias} ({dtype}{quant}, {self.device.type})"


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
    if quantization not in ("int8", "int4"):
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
    return sum(t.numel() * t.element_size() for t in tensors)


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
    quant = quantization_config(options.quantization, device, dtype)
    location, hub_kwargs = weights_location(spec, downloads)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, **hub_kwargs)
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
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(spec=spec, model=model, tokenizer=tokenizer, device=device, dtype=dtype,
                       quantization=options.quantization, weight_bytes=weight_bytes(model),
                       load_seconds=time.perf_counter() - started, revision=revision,
                       adapter=options.adapter)


def _apply_adapter(model, adapter: str):
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise BillionError(f"{adapter} is not a PEFT adapter folder (no adapter_config.json).")
    return PeftModel.from_pretrained(model, adapter).eval()


@dataclass
class _Entry:
    """One thing the budget counts: a loaded model, or memory reserved for work outside the cache."""

    label: str
    bytes: int
    #: None for a reservation (e.g. a training process)
    loaded: LoadedModel | None = None
    #: streams and runs using it now: an entry in use is never evicted
    leases: int = 0


class _KeyLock:
    """The lock that makes concurrent loads of one model wait for a single load; it lives while
    someone loads or waits, and goes when the last one leaves."""

    def __init__(self):
        self.lock = threading.Lock()
        self.users = 0


class Reservation:
    """Bytes counted against a ModelCache's budget until `release()` (idempotent)."""

    def __init__(self, cache: ModelCache, key: tuple):
        self._cache, self._key = cache, key

    def release(self) -> None:
        self._cache._drop(self._key)


class ModelCache:
    """An LRU of loaded models within a memory budget, shared by everything one app does.

    Concurrent requests for the same model wait for a single load, so there are never two copies.
    The LRU evicts the least recently used models to stay within budget, but never one in use:
    `lease` holds a model for as long as a stream or a benchmark reads it, and `reserve` counts
    memory used outside the cache (a training process) until it ends.
    """

    def __init__(self, budget_bytes: int, downloads: DownloadRegistry | None = None):
        self.budget_bytes = budget_bytes
        #: shared downloads of hub models (billion.core.download_jobs)
        self.downloads = downloads if downloads is not None else DownloadRegistry()
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._key_locks: dict[tuple, _KeyLock] = {}
        self._lock = threading.Lock()

    def load(self, name: str | ModelSpec, options: LoadOptions = LoadOptions()) -> LoadedModel:
        """Load (or reuse) a model by alias, hub id, local folder, .gguf path or spec. Not held: a
        later load may evict it; `lease` it for as long as it is used."""
        return self._acquire(_spec(name), options, lease=False)

    def get(self, spec: ModelSpec, options: LoadOptions) -> LoadedModel:
        return self._acquire(spec, options, lease=False)

    @contextmanager
    def lease(self, name: str | ModelSpec, options: LoadOptions = LoadOptions()) -> Iterator[LoadedModel]:
        """The model, kept in the cache (never evicted, never loaded twice) until the block ends."""
        spec = _spec(name)
        loaded = self._acquire(spec, options, lease=True)
        try:
            yield loaded
        finally:
            self._release(_key(spec, options))

    def reserve(self, label: str, nbytes: int) -> Reservation:
        """Count nbytes used outside the cache (a training run's process) against the budget until
        released; models not in use are evicted now to make room."""
        key = ("reserved", label, secrets.token_hex(4))
        with self._lock:
            self._evict_for(nbytes)
            self._entries[key] = _Entry(label, nbytes, leases=1)
        return Reservation(self, key)

    def _acquire(self, spec: ModelSpec, options: LoadOptions, lease: bool) -> LoadedModel:
        key = _key(spec, options)
        key_lock = self._enter(key)
        try:
            with key_lock.lock:
                with self._lock:
                    entry = self._entries.get(key)
                    if entry is not None and entry.loaded is not None:
                        self._entries.move_to_end(key)
                        entry.leases += int(lease)
                        return entry.loaded
                    self._evict_for(_estimate_bytes(spec, options))
                loaded = load_fresh(spec, options, self.downloads)
                with self._lock:
                    self._entries[key] = _Entry(loaded.label, loaded.weight_bytes, loaded, int(lease))
                    self._evict_for(0, keep=key)
                return loaded
        finally:
            self._leave(key)

    def _enter(self, key: tuple) -> _KeyLock:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, _KeyLock())
            key_lock.users += 1
            return key_lock

    def _leave(self, key: tuple) -> None:
        with self._lock:
            key_lock = self._key_locks[key]
            key_lock.users -= 1
            if key_lock.users == 0:
                del self._key_locks[key]

    def _release(self, key: tuple) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.leases > 0:
                entry.leases -= 1

    def _drop(self, key: tuple) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def _evict_for(self, incoming: int, keep: tuple | None = None) -> None:
        """Drop least recently used models not in use until `incoming` more bytes fit (call with
        _lock held). What cannot go (in use, reserved, or `keep`, the model just loaded) stays,
        even over budget: taking it away would not free its memory, only lose track of it."""
        while self.used_bytes() + incoming > self.budget_bytes:
            victim = next((k for k, e in self._entries.items()
                           if e.leases == 0 and e.loaded is not None and k != keep), None)
            if victim is None:
                break
            log.info("evicting %s to stay within the model budget", self._entries.pop(victim).label)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def used_bytes(self) -> int:
        return sum(e.bytes for e in self._entries.values())

    def loaded(self) -> list[LoadedModel]:
        with self._lock:
            return [e.loaded for e in self._entries.values() if e.loaded is not None]

    def in_use(self) -> list[str]:
        """Labels of the models leased and the reservations held now."""
        with self._lock:
            return [e.label for e in self._entries.values() if e.leases > 0]

    def clear(self) -> None:
        """Drop every model not in use (reservations and leased models stay)."""
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.leases == 0]:
                del self._entries[key]


def _spec(name: str | ModelSpec) -> ModelSpec:
    return resolve(name) if isinstance(name, str) else name


def _key(spec: ModelSpec, options: LoadOptions) -> tuple:
    return (spec.alias, spec.source, options)


def _estimate_bytes(spec: ModelSpec, options: LoadOptions) -> int:
    per_param = {"int8": 1, "int4": 0.5}.get(options.quantization,
                                              2 if options.dtype in ("bf16", "fp16") else 4)
    return int(spec.params_m * 1e6 * per_param)
