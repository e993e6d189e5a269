"""What a race is made of and returns: the draft choice, the built draft, the race's and the sweep's results."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from billion.core.generation import GenerationResult
from billion.core.sampling import SamplingSettings
from billion.spec.decoding import KSchedule, SpeculativeResult
from billion.spec.numerics import Divergence
from billion.spec.reference import ReferenceRun
from billion.spec.source import DraftSource

DraftKind = Literal["model", "prompt_lookup", "self", "quant"]


@dataclass(frozen=True)
class DraftChoice:
    """Which draft source to race with, as a person names it."""

    kind: DraftKind
    #: registry alias (or path) of the draft model, for kind "model"
    model: str = ""
    #: how many of the target's layers draft, for kind "self"
    layers: int = 0
    #: "int8" or "int4", for kind "quant"
    scheme: str = ""

    @property
    def label(self) -> str:
        labels = {"model": self.model, "prompt_lookup": "prompt-lookup", "self": f"self:{self.layers}",
                  "quant": f"quant:{self.scheme}"}
        return labels[self.kind]


@dataclass(frozen=True)
class BuiltDraft:
    """A draft source ready to race, with what a person should know about it."""

    choice: DraftChoice
    source: DraftSource
    #: how it relates to the target: "same tokenizer", "via text" (another tokenizer), "" otherwise
    pairing: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RaceResult:
    target: str
    draft: str
    schedule: KSchedule
    settings: SamplingSettings
    prompt_tokens: int
    plain: GenerationResult
    speculative: SpeculativeResult
    #: speculative decode tokens/s over plain decode tokens/s
    speedup: float
    #: plain total time over speculative total time (prefill included)
    wall_speedup: float
    #: greedy only: are both outputs identical? None when sampling (outputs differ by chance)
    lossless: bool | None
    #: greedy only: the first token position where the outputs differ, None if they do not
    first_difference: int | None
    reference: ReferenceRun | None = None
    #: measured: the mean verify forward's time over one plain decoding step (c of the (k+1)-token
    #: verify; the paper assumes 1)
    verify_cost_ratio: float = 0.0
    #: Leviathan's prediction with that measured verify cost in place of 1
    predicted_speedup_measured: float = 0.0
    #: greedy outputs that differ: the target's logits where they part (numerics or a real difference)
    divergence: Divergence | None = None
    #: what a person should know: a draft that cannot pay off, the acceptance it would need
    notes: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        """"identical", "numerics" (differs only by verify-vs-step rounding), "differs" or "sampling"."""
        if self.lossless is None:
            return "sampling"
        if self.lossless:
            return "identical"
        return "numerics" if self.divergence is not None and self.divergence.numerics else "differs"


@dataclass(frozen=True)
class SweepPoint:
    k: int
    measured_speedup: float
    predicted_speedup: float
    acceptance_rate: float
    tokens_per_target_forward: float
    cost_ratio: float
    #: greedy only: output identical to plain decoding
    identical: bool | None
    #: the mean verify forward over one plain step
    verify_cost_ratio: float = 0.0
    #: range of the per-repeat speedups (each repeat: speculative vs a plain run of its own)
    low: float = float("nan")
    high: float = float("nan")
    repeats: int = 1
    #: why this point's figure is noisy (wide range, busy machine), or ""
    note: str = ""
