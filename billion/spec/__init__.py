"""Speculative decoding: the draft-and-verify engine, draft sources, and the race against plain decoding."""

from billion.core.exports import public_api

__all__, __getattr__, __dir__ = public_api(__name__, {
    "billion.spec.decoding": ("KSchedule", "SpeculativeResult", "speculative_generate"),
    "billion.spec.drafts": ("ModelDraft", "self_draft"),
    "billion.spec.source": ("DraftSource",),
    "billion.spec.lookup": ("PromptLookupDraft",),
    "billion.spec.quant_draft": ("SharedCacheDraft", "quantized_copy"),
    "billion.spec.cross": ("TextDraft",),
    "billion.spec.outcome": ("DraftChoice", "BuiltDraft"),
    "billion.spec.race": ("RACE_DEFAULTS", "RaceRequest", "RaceResult", "SweepPoint", "k_sweep",
                          "parse_draft", "run_race"),
})
