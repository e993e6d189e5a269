"""Decode speed of billion's generation loop vs plain `model.generate`, same model, prompt, dtype, length.

    .venv/bin/python benchmarks/generation.py [--model smollm2-135m] [--tokens 128] [--repeats 5]

Both generate exactly --tokens new tokens greedily (EOS ignored) after the same chat prompt. The two
are run alternately, so background load affects both alike; the table shows medians and the ratio
ours / transformers (> 1 means billion is faster).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import transformers

from billion.core.generation import chat_input_ids, stream_ids
from billion.core.loading import LoadOptions, load_fresh
from billion.core.sampling import SamplingSettings
from billion.core.table import format_table

PROMPT = [{"role": "user", "content": "Write a short story about a robot who learns to paint."}]


def ours(loaded, ids, tokens: int) -> tuple[float, float]:
    """(end-to-end tokens/s, decode-only tokens/s)."""
    settings = SamplingSettings(temperature=0, max_new_tokens=tokens, ignore_eos=True)
    started = time.perf_counter()
    for update in stream_ids(loaded, ids, settings):
        pass
    total = time.perf_counter() - started
    result = update.result
    assert len(result.token_ids) == tokens, len(result.token_ids)
    return tokens / total, result.decode_tokens_per_s


def reference(loaded, ids, tokens: int) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        out = loaded.model.generate(ids, do_sample=False, max_new_tokens=tokens, min_new_tokens=tokens,
                                    pad_token_id=loaded.tokenizer.pad_token_id)
    total = time.perf_counter() - started
    assert out.shape[1] - ids.shape[1] == tokens
    return tokens / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", default="fp32,bf16")
    args = parser.parse_args()
    rows = []
    for dtype in args.dtypes.split(","):
        loaded = load_fresh(args.model, LoadOptions(dtype=dtype))
        ids = chat_input_ids(loaded, PROMPT)
        ours(loaded, ids, 8), reference(loaded, ids, 8)  # warm-up
        mine, mine_decode, theirs = [], [], []
        for _ in range(args.repeats):
            e2e, decode = ours(loaded, ids, args.tokens)
            mine.append(e2e)
            mine_decode.append(decode)
            theirs.append(reference(loaded, ids, args.tokens))
        m, t = statistics.median(mine), statistics.median(theirs)
        rows.append([args.model, dtype, ids.shape[1], args.tokens, f"{m:.1f}", f"{statistics.median(mine_decode):.1f}",
                     f"{t:.1f}", f"{m / t:.2f}x", f"{min(mine):.1f}-{max(mine):.1f}", f"{min(theirs):.1f}-{max(theirs):.1f}"])
    print(f"# generation benchmark · {time.strftime('%Y-%m-%d %H:%M')} · {platform.processor() or platform.machine()} "
          f"· {torch.get_num_threads()} threads · torch {torch.__version__} · transformers {transformers.__version__}")
    print(format_table(["model", "dtype", "prompt tok", "new tok", "ours tok/s", "ours decode tok/s",
                        "generate tok/s", "ratio", "ours range", "generate range"], rows))


if __name__ == "__main__":
    main()
