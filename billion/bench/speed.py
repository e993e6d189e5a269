"""Speed and memory of one loaded model: time to first token, decode tokens/s, peak memory, weight size.

Method: for each fixed prompt length (a prompt of exactly that many tokens), a greedy KV-cache
decode of a fixed number of new tokens, EOS ignored so every run does the same work. Warm-up runs
first (kernel selection, allocator, caches), then repeated runs summarized as median and min/max.
- time to first token: prefill of the prompt + the first greedy token, synchronized;
- decode tokens/s: (new_tokens - 1) / seconds from the first token to the last;
- peak memory: on GPU, CUDA max allocated during the runs; on CPU, the process RSS high-water mark
  (the kernel's VmHWM, reset before the runs; sampled RSS where that reset is not allowed). It is the
  whole process, so other models loaded in it count too.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import psutil
import torch
from transformers import DynamicCache

from billion.core.errors import BillionError
from billion.core.generation import decode_one_token, prefill
from billion.core.loading import weight_bytes

if TYPE_CHECKING:
    from billion.core.loading import LoadedModel

# Plain prose, so prompt tokens look like ordinary text to the model.
FILLER = ("The committee met on Tuesday to review the annual budget. After a long discussion about "
          "schools, roads and the library, the members agreed to publish a summary for residents. ")


@dataclass(frozen=True)
class Spread:
    """Median and range of repeated measurements."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> "Spread":
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclass(frozen=True)
class LengthTiming:
    prompt_tokens: int
    #: tokens generated per run (the first comes from prefill)
    new_tokens: int
    ttft_s: Spread
    decode_tokens_per_s: Spread


@dataclass(frozen=True)
class SpeedResult:
    model: str
    device: str
    dtype: str
    quantization: str
    #: bytes of parameters and buffers
    weight_bytes: int
    peak_memory_bytes: int
    #: "cuda_max_allocated", "rss_high_water" or "rss_sampled"
    memory_kind: str
    timings: tuple[LengthTiming, ...]
    warmup: int
    repeats: int
    torch_threads: int
    seconds: float
    cancelled: bool = False


@dataclass(frozen=True)
class SpeedProgress:
    done: int
    total: int
    #: set on the last update only
    result: SpeedResult | None = None


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def context_length(model) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(model.config, name, None)
        if value:
            return int(value)
    return None


def fixed_length_prompt(tokenizer, length: int, device: torch.device) -> torch.Tensor:
    """Exactly `length` token ids (shape (1, length)): the filler's tokens repeated and cut."""
    ids = tokenizer(FILLER, add_special_tokens=False)["input_ids"]
    if not ids:
        raise BillionError("The tokenizer turned the filler text into no tokens: check the tokenizer.")
    repeated = (ids * (length // len(ids) + 1))[:length]
    return torch.tensor([repeated], device=device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class RunTiming:
    #: prefill + first token
    ttft_s: float
    #: from the first token to the last
    decode_s: float
    tokens: tuple[int, ...]

    @property
    def decode_tokens_per_s(self) -> float:
        return (len(self.tokens) - 1) / self.decode_s


@torch.inference_mode()  # per run, not around the yields: grad mode is per thread
def timed_greedy_run(model, input_ids: torch.Tensor, new_tokens: int) -> RunTiming:
    """One greedy KV-cache decode of exactly new_tokens tokens (EOS ignored), timed."""
    device = input_ids.device
    synchronize(device)
    started = time.perf_counter()
    cache = DynamicCache()
    tokens = [int(prefill(model, input_ids, cache).argmax())]  # int() waits for the device
    first = time.perf_counter()
    while len(tokens) < new_tokens:
        tokens.append(int(decode_one_token(model, tokens[-1], cache, device).argmax()))
    synchronize(device)
    return RunTiming(first - started, time.perf_counter() - first, tuple(tokens))


class PeakMemory:
    """Peak memory from start() to stop(): CUDA max allocated, or the process RSS high-water mark."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = "cuda_max_allocated" if device.type == "cuda" else "rss_high_water"
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.kind == "cuda_max_allocated":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.kind = "rss_sampled"
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self._peak = max(self._peak, process.memory_info().rss)
            self._stop.wait(0.005)

    def stop(self) -> int:
        """The peak since start(); safe to call more than once."""
        if self.kind == "cuda_max_allocated":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.kind == "rss_high_water":
            return _vm_hwm_bytes()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return max(self._peak, psutil.Process().memory_info().rss)


def _vm_hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return psutil.Process().memory_info().rss


def check_fits(model, prompt_lengths: Sequence[int], new_tokens: int) -> None:
    if new_tokens < 2:
        raise BillionError(f"new_tokens must be at least 2 to time decoding (got {new_tokens}).")
    if not prompt_lengths or min(prompt_lengths) < 1:
        raise BillionError("Give at least one prompt length of 1 token or more.")
    context = context_length(model)
    if context is not None and max(prompt_lengths) + new_tokens > context:
        raise BillionError(f"A {max(prompt_lengths)}-token prompt plus {new_tokens} new tokens exceeds "
                           f"the model's context of {context}: use shorter prompt lengths.")


def iter_speed(model, tokenizer, *, name: str = "", quantization: str = "none",
               prompt_lengths: Sequence[int] = (128, 512), new_tokens: int = 64, warmup: int = 1,
               repeats: int = 3, cancel: threading.Event | None = None) -> Iterator[SpeedProgress]:
    """Measure run by run (for a progress bar); the last update carries the SpeedResult.

    A cancel stops after the current run; the result then holds the prompt lengths finished so far.
    """
    if repeats < 1 or warmup < 0:
        raise BillionError(f"Need repeats >= 1 and warmup >= 0 (got {repeats}, {warmup}).")
    check_fits(model, prompt_lengths, new_tokens)
    device = model_device(model)
    total = len(prompt_lengths) * (warmup + repeats)
    started = time.perf_counter()
    memory = PeakMemory(device)
    memory.start()
    try:
        timings, done, cancelled = [], 0, False
        for length in prompt_lengths:
            input_ids = fixed_length_prompt(tokenizer, length, device)
            runs = []
            for run in range(warmup + repeats):
                if cancel is not None and cancel.is_set():
                    cancelled = True
                    break
                measured = timed_greedy_run(model, input_ids, new_tokens)
                if run >= warmup:
                    runs.append(measured)
                done += 1
                if done < total:
                    yield SpeedProgress(done, total)
            if cancelled:
                break
            timings.append(LengthTiming(
                prompt_tokens=length, new_tokens=len(runs[0].tokens),
                ttft_s=Spread.of([r.ttft_s for r in runs]),
                decode_tokens_per_s=Spread.of([r.decode_tokens_per_s for r in runs])))
    finally:
        peak = memory.stop()
    result = SpeedResult(
        model=name, device=str(device), dtype=str(getattr(model, "dtype", "")).removeprefix("torch."),
        quantization=quantization, weight_bytes=weight_bytes(model), peak_memory_bytes=peak,
        memory_kind=memory.kind, timings=tuple(timings), warmup=warmup, repeats=repeats,
        torch_threads=torch.get_num_threads(), seconds=time.perf_counter() - started, cancelled=cancelled)
    yield SpeedProgress(done, total, result)


def measure_speed(model, tokenizer, **options) -> SpeedResult:
    """Run iter_speed to the end; options as iter_speed takes them."""
    update = None
    for update in iter_speed(model, tokenizer, **options):
        pass
    assert update is not None and update.result is not None
    return update.result


def iter_speed_loaded(loaded: "LoadedModel", **options) -> Iterator[SpeedProgress]:
    """iter_speed for a model from billion.core.loading, recording its alias and quantization."""
    return iter_speed(loaded.model, loaded.tokenizer, name=loaded.spec.alias,
                      quantization=loaded.quantization, **options)


def measure_loaded(loaded: "LoadedModel", **options) -> SpeedResult:
    return measure_speed(loaded.model, loaded.tokenizer, name=loaded.spec.alias,
                         quantization=loaded.quantization, **options)
