"""The ground floor: the model registry, loading, generation and sampling, settings and limits.

Everything else in billion builds on these; nothing here imports another billion package. Names
below are imported on first use, so `import billion.core` loads no torch.
"""

from billion.core.exports import public_api

__all__, __getattr__, __dir__ = public_api(__name__, {
    "billion.core.errors": ("BillionError",),
    "billion.core.registry": ("DEFAULT_MODEL", "MODELS", "ModelSpec", "WeightSource", "all_models",
                              "drafts_for", "pick_default", "resolve"),
    "billion.core.settings": ("Settings",),
    "billion.core.limits": ("DEFAULT_LIMITS", "Limits", "check_prompt"),
    "billion.core.sampling": ("SamplingSettings", "sampling_from"),
    "billion.core.loading": ("LoadOptions", "LoadedModel", "ModelCache"),
    "billion.core.generation": ("GenerationResult", "GenerationUpdate", "generate_chat", "interleave",
                                "stream_chat"),
    "billion.core.chat": ("CHAT_DEFAULTS", "ChatRequest", "chat_streams"),
    "billion.core.availability": ("Availability", "HubProbe", "available", "available_all",
                                  "available_aliases"),
    "billion.core.logs": ("quiet_libraries",),
})
