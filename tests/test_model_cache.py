"""The model cache's leases and reservations, with a real tiny model and real threads."""

from __future__ import annotations

import threading

from billion.core.chat import ChatRequest, chat_streams
from billion.core.loading import LoadOptions
from billion.core.model_cache import ModelCache
from billion.core.registry import resolve
from billion.core.sampling import SamplingSettings


def one_model_budget(tiny_dir) -> ModelCache:
    """A cache with room for one fp32 tiny model and not for a second."""
    size = ModelCache(2**30).load(str(tiny_dir), LoadOptions(dtype="fp32")).weight_bytes
    return ModelCache(int(size * 1.5))


def test_a_leased_model_is_not_evicted_by_another_thread(tiny_dir):
    cache = one_model_budget(tiny_dir)
    spec = resolve(str(tiny_dir))
    held, evicting, done = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def streamer():
        with cache.lease(spec, LoadOptions(dtype="fp32")) as loaded:
            seen["model"] = loaded
            held.set()
            evicting.wait(30)
            # Still cached while used: the other thread's load did not take it away.
            seen["cached"] = any(m is loaded for m in cache.loaded())
        done.set()

    def loader():
        held.wait(30)
        seen["other"] = cache.load(spec, LoadOptions(dtype="fp32", device="cpu"))
        evicting.set()

    threads = [threading.Thread(target=streamer), threading.Thread(target=loader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert done.is_set() and seen["cached"] and seen["other"] is not seen["model"]
    assert cache.in_use() == []
    # Released: the next load may evict it now, and does (the budget holds one).
    cache.load(spec, LoadOptions(dtype="fp32", device="cpu"))
    cache.load(spec, LoadOptions(dtype="bf16"))
    assert not any(m is seen["model"] for m in cache.loaded())
    assert cache._key_locks == {}  # per-key locks go with their last user


def test_a_chat_stream_holds_its_model_until_it_ends(tiny_dir):
    cache = one_model_budget(tiny_dir)
    request = ChatRequest(prompt="hi", models=(str(tiny_dir),),
                          settings=SamplingSettings(max_new_tokens=4, temperature=0.0), precision="fp32")
    ((loaded, stream),) = chat_streams(request, cache)
    assert cache.in_use() == [loaded.label]
    cache.load(str(tiny_dir), LoadOptions(dtype="bf16"))  # over budget: the streamed model stays
    assert any(m is loaded for m in cache.loaded())
    list(stream)
    assert cache.in_use() == []
    ((_, unread),) = chat_streams(request, cache)
    unread.close()  # a stream dropped unread (the page closed) releases too
    assert cache.in_use() == []


def test_a_reservation_counts_against_the_budget(tiny_dir):
    cache = one_model_budget(tiny_dir)
    loaded = cache.load(str(tiny_dir), LoadOptions(dtype="fp32"))
    reservation = cache.reserve("training run x", cache.budget_bytes)
    assert loaded not in cache.loaded()  # evicted to make room for the training process
    assert cache.used_bytes() == cache.budget_bytes and cache.in_use() == ["training run x"]
    reservation.release()
    reservation.release()
    assert cache.used_bytes() == 0
