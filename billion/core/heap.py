"""The C heap's policy in a process that decodes: freed prompt buffers go back to the system.

glibc serves allocations above its mmap threshold (128 KiB) with their own mappings, returned on
free, but raises the threshold to the size of every such block freed, up to 32 MiB. After the first
prompt, buffers of a prompt's size therefore come from the heap and stay there when freed: a
TinyLlama int4 process held 20-30 MiB more than it used (docs/benchmarks/decode.md). Setting the
threshold explicitly turns that adjustment off. MALLOC_MMAP_THRESHOLD_ in the environment wins.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
DEFAULT_THRESHOLD = 128 * 1024


def return_freed_buffers(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold (True where it was set; other C libraries are left alone)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
