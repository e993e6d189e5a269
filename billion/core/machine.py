"""What produced a measured figure: this machine and the versions of the libraries that matter."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def library_versions() -> dict[str, str]:
    """Versions that change benchmark numbers, recorded next to each result."""
    versions = {"python": platform.python_version()}
    for dist in ("billion", "torch", "transformers", "peft", "bitsandbytes"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def describe_machine() -> str:
    """CPU architecture and, when torch is already loaded and sees one, the GPU name."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"{platform.node()} {torch.cuda.get_device_name(0)}"
    return f"{platform.node()} {platform.machine()} CPU x{os.cpu_count()}"
