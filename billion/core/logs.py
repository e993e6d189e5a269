"""What billion prints: its own warnings and errors, not the libraries' notes to their developers."""

from __future__ import annotations

import os
import sys
import warnings

#: libraries whose FutureWarnings and DeprecationWarnings announce API changes to their developers
QUIET_LIBRARIES = ("transformers", "peft", "accelerate", "torch", "huggingface_hub", "datasets")


def quiet_libraries() -> None:
    """Hide the libraries' deprecation notices and info logs (call once, at start).

    Everything else still reaches the person: billion's own warnings, UserWarnings and
    RuntimeWarnings from any library, and every error. BILLION_VERBOSE=1 shows all of it.
    """
    if os.environ.get("BILLION_VERBOSE", "").lower() in ("1", "true", "yes"):
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:  # it reads that variable once, at import
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    pattern = rf"({'|'.join(QUIET_LIBRARIES)})(\.|$)"
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=pattern)
