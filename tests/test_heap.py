"""The C heap policy: with it, big buffers freed after a prompt leave the process."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc policy")

CHILD = r"""
import ctypes, sys
from pathlib import Path

def rss_mib():
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "policy":
    from billion.core.heap import return_freed_buffers
    assert return_freed_buffers()
big = libc.malloc(8 << 20)
libc.free(big)  # glibc's own policy now raises its mmap threshold to 8 MiB
buffers = [libc.malloc(1 << 20) for _ in range(64)]  # a prompt's activations
pin = libc.malloc(64)  # something allocated later and kept: the heap cannot shrink past it
for b in buffers:
    ctypes.memset(b, 1, 1 << 20)
high = rss_mib()
for b in buffers:
    libc.free(b)
print(high - rss_mib())
"""


def _released_mib(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    done = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, env=env,
                          check=True)
    return float(done.stdout)


def test_freed_buffers_go_back_to_the_system():
    assert _released_mib("glibc") < 8  # the failure this policy fixes: 64 MiB stay
    assert _released_mib("policy") > 56


def test_environment_setting_wins(monkeypatch):
    from billion.core.heap import return_freed_buffers

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert return_freed_buffers() is False
