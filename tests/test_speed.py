"""Speed and memory measurement on the tiny Llama: consistent fields, a real greedy decode."""

from __future__ import annotations

import threading

import pytest
import torch

from billion.bench.speed import (Spread, fixed_length_prompt, iter_speed, measure_loaded, measure_speed,
                                 timed_greedy_run)
from billion.core.errors import BillionError

LENGTHS = (16, 40)
NEW = 8


@pytest.fixture(scope="module")
def speed(llama, tokenizer):
    return measure_speed(llama, tokenizer, prompt_lengths=LENGTHS, new_tokens=NEW, warmup=1, repeats=3)


def test_prompts_have_exactly_the_requested_length(tokenizer):
    for length in (1, 7, 128, 300):
        ids = fixed_length_prompt(tokenizer, length, torch.device("cpu"))
        assert ids.shape == (1, length)


def test_timed_run_is_the_same_greedy_decode_as_generate(llama, tokenizer):
    ids = fixed_length_prompt(tokenizer, 20, torch.device("cpu"))
    run = timed_greedy_run(llama, ids, 12)
    reference = llama.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                               max_new_tokens=12, min_new_tokens=12)
    assert list(run.tokens) == reference[0, 20:].tolist()
    assert run.ttft_s > 0 and run.decode_s > 0


def test_result_fields_are_consistent(speed, llama):
    assert [t.prompt_tokens for t in speed.timings] == list(LENGTHS)
    for timing in speed.timings:
        assert timing.new_tokens == NEW
        for spread in (timing.ttft_s, timing.decode_tokens_per_s):
            assert spread.n == 3
            assert 0 < spread.low <= spread.median <= spread.high
    expected_bytes = sum(t.numel() * t.element_size() for t in [*llama.parameters(), *llama.buffers()])
    assert speed.weight_bytes == expected_bytes
    assert speed.peak_memory_bytes > speed.weight_bytes
    assert speed.memory_kind in ("rss_high_water", "rss_sampled")
    assert (speed.device, speed.dtype, speed.quantization) == ("cpu", "float32", "none")
    assert speed.warmup == 1 and speed.repeats == 3 and not speed.cancelled


def test_spread_is_median_and_range():
    assert Spread.of([3.0, 1.0, 2.0, 10.0]) == Spread(median=2.5, low=1.0, high=10.0, n=4)


def test_progress_counts_every_run(llama, tokenizer):
    updates = list(iter_speed(llama, tokenizer, prompt_lengths=(8, 12), new_tokens=3, warmup=1, repeats=2))
    assert [u.done for u in updates] == [1, 2, 3, 4, 5, 6]
    assert updates[-1].result is not None and all(u.result is None for u in updates[:-1])


def test_cancel_keeps_the_lengths_already_measured(llama, tokenizer):
    cancel = threading.Event()
    result = None
    for update in iter_speed(llama, tokenizer, prompt_lengths=(8, 12), new_tokens=3, warmup=0,
                             repeats=2, cancel=cancel):
        if update.done == 2:
            cancel.set()
        result = update.result
    assert result.cancelled and [t.prompt_tokens for t in result.timings] == [8]


def test_lengths_beyond_the_context_are_refused(llama, tokenizer):
    context = llama.config.max_position_embeddings
    with pytest.raises(BillionError, match="context"):
        measure_speed(llama, tokenizer, prompt_lengths=(context,), new_tokens=4)
    with pytest.raises(BillionError):
        measure_speed(llama, tokenizer, prompt_lengths=(8,), new_tokens=1)


def test_loaded_model_records_name_and_quantization(tiny_dir, models):
    loaded = models.load(str(tiny_dir))
    result = measure_loaded(loaded, prompt_lengths=(8,), new_tokens=3, warmup=0, repeats=1)
    assert result.model == loaded.spec.alias and result.quantization == loaded.quantization
    assert result.weight_bytes == loaded.weight_bytes
