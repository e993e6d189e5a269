"""Per-model default sampling: what the model's own generation_config.json asks for, else what its
model card recommends, else the app's defaults.

A 135M instruct model at the app's generic temperature 0.7 answers "What is the capital of France?"
with nonsense; its card recommends 0.2 (top-p 0.9). Base models get no recommendation: they are
not tuned for chat at any temperature.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from billion.core.errors import BillionError
from billion.core.registry import ModelSpec, resolve
from billion.core.sampling import SamplingSettings

#: sampling the model cards recommend, keyed by upstream hub id; (temperature, top_p, where)
CARD_SAMPLING: dict[str, tuple[float, float, str]] = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": (0.2, 0.9, "SmolLM2-135M-Instruct model card"),
    "HuggingFaceTB/SmolLM2-360M-Instruct": (0.2, 0.9, "SmolLM2-360M-Instruct model card"),
    "HuggingFaceTB/SmolLM2-1.7B-Instruct": (0.2, 0.9, "SmolLM2-1.7B-Instruct model card"),
}
_CONFIG_FIELDS = ("temperature", "top_p", "top_k", "repetition_penalty")


@dataclass(frozen=True)
class Recommended:
    """A model's default sampling and where it comes from (shown next to the sliders)."""

    settings: SamplingSettings
    source: str

    @property
    def note(self) -> str:
        s = self.settings
        return f"temperature {s.temperature:g}, top-p {s.top_p:g}: {self.source}"


def local_folder(spec: ModelSpec) -> Path | None:
    """The model's folder if it is already on disk here (never downloads or converts)."""
    try:
        if spec.source.kind == "local":  # a model folder on disk carries its own generation_config
            folder = Path(spec.source.location)
            return folder if folder.is_dir() else None
        if spec.is_offline:
            from billion.core.weights import converted_dir, is_converted, package_gguf_path
            gguf = package_gguf_path(spec)
            return converted_dir(gguf) if is_converted(gguf) else None
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(spec.hub_id, "generation_config.json")
        return Path(found).parent if isinstance(found, str) else None
    except (BillionError, OSError, ValueError):
        return None


def from_generation_config(folder: Path | None) -> dict[str, float]:
    """The sampling fields a generation_config.json sets (only when it asks for sampling)."""
    path = folder / "generation_config.json" if folder else None
    if path is None or not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if config.get("do_sample") is False:
        return {"temperature": 0.0}
    return {k: config[k] for k in _CONFIG_FIELDS if isinstance(config.get(k), (int, float))}


def recommended_sampling(name: str, base: SamplingSettings = SamplingSettings()) -> Recommended:
    """base with the model's own sampling fields; unknown names and endpoints keep base."""
    try:
        spec = resolve(name)
    except BillionError:
        return Recommended(base, "app default")
    found = from_generation_config(local_folder(spec))
    if found:
        return Recommended(replace(base, **found), f"{spec.display_name}'s generation_config.json")
    card = CARD_SAMPLING.get(spec.upstream or spec.hub_id)
    if card and spec.instruct:
        return Recommended(replace(base, temperature=card[0], top_p=card[1]), card[2])
    return Recommended(base, "app default")
