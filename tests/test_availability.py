"""Whether the hub answers: asked for real (a local server stands in for it), at most once per TTL."""

from __future__ import annotations

import socket

from huggingface_hub import constants

from billion.core.availability import HubProbe, hub_answers


def test_the_probe_asks_once_per_ttl_and_respects_offline(monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")  # read per call
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    cached, fresh = HubProbe(ttl_s=300), HubProbe(ttl_s=0)
    assert hub_answers() and cached.reachable() and fresh.reachable()
    server.close()  # the hub goes away
    assert not hub_answers() and not fresh.reachable()
    assert cached.reachable()  # still the answer of a moment ago: no new connection per model list
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert not cached.reachable()  # offline means no, whatever was cached
