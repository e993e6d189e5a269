"""Start-up cost of the offline models: first load (GGUF dequantized and cached) vs later loads.

    .venv/bin/python benchmarks/load_time.py [--models smollm2-135m,gemma3-270m]

Each load runs in a fresh process against an empty temporary cache folder (first) and then the
same folder (later), so the figures are what a person sees on a cold and a warm start. The
reference is transformers reading the GGUF directly, which is what every start would cost without
the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from billion.core.table import format_table

CHILD = """
import json, sys, time
started = time.perf_counter()
from billion.core.loading import load_fresh
loaded = load_fresh(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - started, "in_load": loaded.load_seconds}))
"""


def timed_load(alias: str, cache: str) -> float:
    env = {**os.environ, "BILLION_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD, alias], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["in_load"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="smollm2-135m,gemma3-270m")
    args = parser.parse_args()
    rows = []
    for alias in args.models.split(","):
        with tempfile.TemporaryDirectory() as cache:
            first = timed_load(alias, cache)
            later = min(timed_load(alias, cache) for _ in range(2))
        rows.append([alias, f"{first:.1f}", f"{later:.1f}", f"{first / later:.0f}x"])
    print(f"# load times · {time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} CPUs")
    print(format_table(["model", "first load s (GGUF -> cache)", "later load s (cache)", "speed-up"], rows))


if __name__ == "__main__":
    main()
