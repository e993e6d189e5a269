"""A disk that fills up, for real: RLIMIT_FSIZE caps what this process may write to any file, so
writes past it fail in the kernel (EFBIG, with SIGXFSZ ignored) as they would on a full disk."""

from __future__ import annotations

import contextlib
import resource
import signal


@contextlib.contextmanager
def files_capped_at(limit_bytes: int):
    """Every file this process writes stops at `limit_bytes` (main thread only: it sets a signal)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
