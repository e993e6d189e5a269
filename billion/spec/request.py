"""A race as a person asks for it: the request the race tab and `python -m billion race` both fill,
with its defaults, and the draft named in it."""

from __future__ import annotations

from dataclasses import dataclass, replace

from billion.core.errors import BillionError
from billion.core.generation import Message
from billion.core.limits import DEFAULT_LIMITS, Limits, check_max_new_tokens, check_prompt, check_system
from billion.core.loading import LoadOptions
from billion.core.registry import DEFAULT_MODEL
from billion.core.sampling import SamplingSettings
from billion.spec.decoding import KSchedule
from billion.spec.outcome import DraftChoice
from billion.spec.quant_draft import SCHEMES

PROMPT_LOOKUP_NAMES = ("prompt-lookup", "prompt_lookup", "lookup", "pld")
#: the k a race starts at, by kind of draft. Prompt lookup and the quantized target choose each
#: round how many tokens to draft, so k is only their ceiling, and a low one cost them speed
#: (docs/benchmarks/speculative.md: quant:int8 1.50x over plain at k <= 6, 1.59x at k <= 10);
#: model drafts draft k tokens every round
SUGGESTED_K = {"prompt_lookup": 10, "quant": 10, "self": 4, "model": 4}
DEFAULT_K = 4


#: how a race samples unless asked otherwise: greedy, so the lossless check applies
RACE_DEFAULTS = SamplingSettings(temperature=0.0, max_new_tokens=128)


@dataclass(frozen=True)
class RaceRequest:
    """One race as a person asks for it; the race tab and `python -m billion race` both fill this."""

    prompt: str
    #: the model whose output both runs must produce: alias, hub id, local folder or .gguf
    target: str = DEFAULT_MODEL
    #: as parse_draft reads it: prompt-lookup, self:N, quant:int8, quant:int4 or a draft model's alias
    draft: str = "prompt-lookup"
    #: the suggested k of the default draft (SUGGESTED_K)
    schedule: KSchedule = KSchedule(SUGGESTED_K["prompt_lookup"])
    settings: SamplingSettings = RACE_DEFAULTS
    #: also run Hugging Face's assisted generation with the same draft and k
    reference: bool = False
    #: a few tokens of each run first, so neither timed run pays for first calls
    warmup: bool = True
    dtype: str = "auto"
    quantization: str = "none"
    #: system message ("" = none)
    system: str = ""

    @property
    def messages(self) -> list[Message]:
        system = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return system + [{"role": "user", "content": self.prompt}]

    def validated(self, limits: Limits = DEFAULT_LIMITS) -> RaceRequest:
        """Checks that need no model; the engine checks the rest (context, draft size, tokenizer)."""
        prompt = check_prompt(self.prompt, limits.race_prompt_chars, "a race", "type one or pick an example")
        if not self.target:
            raise BillionError("Pick a target model first (the list shows the models that can load here).")
        parse_draft(self.draft)
        system = check_system(self.system, limits)
        settings = self.settings.validate()
        check_max_new_tokens(settings.max_new_tokens, limits)
        return replace(self, prompt=prompt, system=system, schedule=self.schedule.validate(),
                       settings=settings)

    def load_options(self) -> LoadOptions:
        return LoadOptions(dtype=self.dtype, quantization=self.quantization)  # type: ignore[arg-type]


def parse_draft(text: str) -> DraftChoice:
    """'prompt-lookup', 'self:N', 'quant:int8' / 'quant:int4' or a draft model's alias."""
    name = text.strip()
    if not name:
        raise BillionError("No draft given: use prompt-lookup, self:N, quant:int8, quant:int4, or a "
                           "smaller model's alias.")
    lowered = name.lower()
    if lowered in PROMPT_LOOKUP_NAMES:
        return DraftChoice("prompt_lookup")
    if lowered.startswith("self:"):
        try:
            layers = int(name.split(":", 1)[1])
        except ValueError:
            raise BillionError(f"'{name}': write self:N with N the number of the target's layers that "
                               "draft, e.g. self:8.") from None
        return DraftChoice("self", layers=layers)
    if lowered.startswith("quant:"):
        scheme = lowered.split(":", 1)[1]
        if scheme not in SCHEMES:
            raise BillionError(f"'{name}': write quant:int8 or quant:int4 (the target itself, "
                               "quantized, drafts for it).")
        return DraftChoice("quant", scheme=scheme)
    return DraftChoice("model", model=name)


def suggested_k(draft: str) -> int:
    """The k a race with this draft starts at (DEFAULT_K for a name parse_draft refuses)."""
    try:
        return SUGGESTED_K.get(parse_draft(draft).kind, DEFAULT_K)
    except BillionError:
        return DEFAULT_K
