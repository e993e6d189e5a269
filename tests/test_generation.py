import threading

import pytest
import torch

from billion.core.errors import BillionError
from billion.core.generation import (Detokenizer, chat_input_ids, generate_chat, interleave, stop_token_ids,
                                stream_chat, stream_ids)
from billion.core.sampling import SamplingSettings

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work on a shared 2-core CPU (conftest.py)

GREEDY = SamplingSettings(temperature=0, max_new_tokens=24)
ASK = [{"role": "user", "content": "The capital of France is"}]


@pytest.fixture(scope="module")
def loaded(tiny_dir, models):
    return models.load(str(tiny_dir))


def hf_greedy(loaded, ids, **kwargs):
    out = loaded.model.generate(ids, do_sample=False, max_new_tokens=kwargs.pop("max_new_tokens", 24),
                                eos_token_id=sorted(stop_token_ids(loaded)), pad_token_id=0, **kwargs)
    new = out[0, ids.shape[1]:].tolist()
    return [t for t in new if t not in stop_token_ids(loaded)]


def test_greedy_matches_transformers_generate(loaded):
    ids = chat_input_ids(loaded, ASK)
    result = generate_chat(loaded, ASK, GREEDY)
    assert list(result.token_ids) == hf_greedy(loaded, ids)
    assert result.prompt_tokens == ids.shape[1]
    assert result.text == loaded.tokenizer.decode(result.token_ids, skip_special_tokens=True).lstrip()


def test_repetition_penalty_matches_transformers(loaded):
    ids = chat_input_ids(loaded, ASK)
    settings = SamplingSettings(temperature=0, max_new_tokens=24, repetition_penalty=1.5)
    result = generate_chat(loaded, ASK, settings)
    assert list(result.token_ids) == hf_greedy(loaded, ids, repetition_penalty=1.5)


def test_timings_and_memory_are_reported(loaded):
    # ignore_eos: exactly 8 tokens, whatever the random model prefers
    result = generate_chat(loaded, ASK, SamplingSettings(temperature=0, max_new_tokens=8, ignore_eos=True))
    assert result.ttft_s > 0 and result.total_s >= result.ttft_s
    assert result.peak_memory_bytes > 0
    assert len(result.token_ids) == len(result.token_times) == 8
    assert list(result.token_times) == sorted(result.token_times)
    assert result.token_times[0] == result.ttft_s
    assert result.finish_reason == "length" and result.decode_tokens_per_s > 0


def test_seeded_sampling_is_reproducible(loaded):
    settings = SamplingSettings(temperature=1.0, top_p=0.9, top_k=50, max_new_tokens=16, seed=123)
    first = generate_chat(loaded, ASK, settings)
    assert generate_chat(loaded, ASK, settings).token_ids == first.token_ids
    others = {generate_chat(loaded, ASK, SamplingSettings(temperature=1.0, max_new_tokens=16, seed=s))
              .token_ids for s in range(5)}
    assert len(others) > 1


def test_stop_string_cuts_the_answer(loaded):
    full = generate_chat(loaded, ASK, SamplingSettings(temperature=0, max_new_tokens=40))
    if len(full.text) < 6:
        pytest.skip("random model answered too briefly to pick a stop string")
    stop = full.text[3:6]
    result = generate_chat(loaded, ASK, SamplingSettings(temperature=0, max_new_tokens=40, stop=(stop,)))
    assert result.finish_reason == "stop"
    assert result.text == full.text[:full.text.index(stop)]
    assert stop not in result.text


def test_streamed_text_never_shows_a_stop_string(loaded):
    full = generate_chat(loaded, ASK, SamplingSettings(temperature=0, max_new_tokens=40))
    if len(full.text) < 8:
        pytest.skip("random model answered too briefly")
    stop = full.text[4:8]
    shown = [u.text for u in stream_chat(loaded, ASK, SamplingSettings(temperature=0, max_new_tokens=40,
                                                                          stop=(stop,)))]
    assert all(stop not in text for text in shown)
    assert shown[-1] == full.text[:full.text.index(stop)]


def test_cancel_stops_between_tokens(loaded):
    cancel = threading.Event()
    cancel.set()
    result = generate_chat(loaded, ASK, SamplingSettings(temperature=1.0, max_new_tokens=50, seed=1),
                           cancel=cancel)
    assert result.finish_reason in ("cancelled", "eos") and len(result.token_ids) <= 1


def test_bad_input_gives_clear_messages(loaded):
    with pytest.raises(BillionError, match="empty"):
        generate_chat(loaded, [{"role": "user", "content": "   "}], GREEDY)
    with pytest.raises(BillionError, match="empty"):
        generate_chat(loaded, [], GREEDY)
    with pytest.raises(BillionError, match="max_new_tokens must be between 1"):
        generate_chat(loaded, ASK, SamplingSettings(max_new_tokens=0))
    with pytest.raises(BillionError, match="context"):
        generate_chat(loaded, ASK, SamplingSettings(max_new_tokens=10_000))
    long_prompt = [{"role": "user", "content": "word " * 600}]
    with pytest.raises(BillionError, match="shorten the prompt"):
        generate_chat(loaded, long_prompt, SamplingSettings(max_new_tokens=100))


def test_detokenizer_streams_multibyte_text_exactly(tokenizer):
    text = "héllo ☃ 你好, Paris!"
    ids = tokenizer.encode(text)
    detok = Detokenizer(tokenizer)
    pieces = [detok.add(i) for i in ids]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


def test_interleave_streams_both_to_the_end(loaded):
    ids = chat_input_ids(loaded, ASK)
    short, long = (SamplingSettings(temperature=0, max_new_tokens=n, ignore_eos=True) for n in (5, 9))
    last = None
    for last in interleave(stream_ids(loaded, ids, short), stream_ids(loaded, ids, long)):
        pass
    assert last[0].result is not None and last[1].result is not None
    assert (len(last[0].result.token_ids), len(last[1].result.token_ids)) == (5, 9)
    # Taking turns changes nothing: each answer is the one its stream gives alone.
    alone = [generate_chat(loaded, ASK, settings).token_ids for settings in (short, long)]
    assert [last[0].result.token_ids, last[1].result.token_ids] == alone


def test_a_suspended_stream_leaves_grad_mode_alone(loaded):
    # Grad mode is per thread: a half-read stream must not switch it off for the caller.
    stream = stream_chat(loaded, ASK, SamplingSettings(temperature=0, max_new_tokens=20, ignore_eos=True))
    next(stream)
    assert torch.is_grad_enabled()
    stream.close()


def test_chat_stats_name_this_models_weights_not_only_the_server_peak(loaded):
    """Fix 5: side by side, both models showed the server's one RSS figure as their memory."""
    from billion.core.loading import weight_bytes
    from billion.ui.chat import stats_line

    result = generate_chat(loaded, [{"role": "user", "content": "hi"}],
                           SamplingSettings(temperature=0, max_new_tokens=3))
    assert result.weight_bytes == weight_bytes(loaded.model) > 0
    line = stats_line(result)
    assert f"weights {result.weight_bytes / 2**20:.0f} MiB" in line and "all models" in line
