"""Speculative decoding: the draft-and-verify engine, draft sources, and the race against plain decoding."""

from billion.core.exports import public_api

__all__, __getattr__, __dir__ = public_api(__name__, {
    "billion.spec.decoding": ("KSchedule", "SpeculativeResult", "speculative_generate"),
    "billion.spec.drafts": ("DraftSource", "ModelDraft", "PromptLookupDraft", "self_draft"),
    "billion.spec.race": ("RACE_DEFAULTS", "RaceRequest", "RaceResult", "SweepPoint", "k_sweep",
                          "parse_draft", "run_race"),
})
