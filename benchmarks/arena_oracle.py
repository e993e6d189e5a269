"""How often a sampled Arena answer equals the greedy one: the limit of the Arena's oracle defence.

    .venv/bin/python benchmarks/arena_oracle.py [--model smollm2-135m] [--samples 6] [--tokens 32]

The oracle attack (issue 13, finding 4): ask Chat the Arena's prompt greedily with each model and
compare with the anonymous answers. The Arena now never decodes greedily (a temperature floor) and
seeds every battle with a secret, so Chat cannot replay its sampling; but a sample can still come
out equal to the greedy answer. This counts how often, per temperature, for short factual prompts
(one right answer, a peaked distribution) and for the Arena's own example prompts (open-ended).
An equal answer is the whole answer, token for token, up to --tokens new tokens.
"""

from __future__ import annotations

import argparse
import platform
import secrets
import time
from datetime import date

import torch

from billion.core.generation import generate_chat
from billion.core.loading import LoadOptions, load_fresh
from billion.core.paths import ASSETS
from billion.core.sampling import SamplingSettings
from billion.core.table import format_table

FACTUAL = ("What is the capital of France?", "How many legs does a spider have?",
           "What is 7 times 8?", "Which planet is known as the Red Planet?",
           "What is the chemical symbol for gold?", "Who wrote Romeo and Juliet?",
           "What is the boiling point of water in Celsius?", "How many days are in a leap year?",
           "What is the largest ocean on Earth?", "What colour do you get by mixing blue and yellow?",
           "What is the square root of 81?", "In which continent is Kenya?")
TEMPERATURES = (0.2, 0.5, 0.7, 1.0)


def open_prompts(n: int) -> tuple[str, ...]:
    lines = (ASSETS / "arena_prompts.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line for line in lines if line.strip() and not line.startswith("#"))[:n]


def equal_share(loaded, prompts, temperature: float, samples: int, tokens: int) -> tuple[int, int]:
    """(samples equal to the greedy answer, samples drawn)."""
    equal = drawn = 0
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        greedy = generate_chat(loaded, messages, SamplingSettings(temperature=0, max_new_tokens=tokens))
        for _ in range(samples):
            settings = SamplingSettings(temperature=temperature, top_p=0.95, max_new_tokens=tokens,
                                        seed=secrets.randbelow(2**31))
            equal += generate_chat(loaded, messages, settings).token_ids == greedy.token_ids
            drawn += 1
    return equal, drawn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--samples", type=int, default=6, help="samples per prompt and temperature")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per answer")
    parser.add_argument("--open-prompts", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    loaded = load_fresh(args.model, LoadOptions())
    started = time.perf_counter()
    rows = []
    for name, prompts in (("short factual", FACTUAL), ("arena examples", open_prompts(args.open_prompts))):
        for temperature in TEMPERATURES:
            equal, drawn = equal_share(loaded, prompts, temperature, args.samples, args.tokens)
            rows.append([name, len(prompts), f"{temperature:g}", drawn, equal, f"{100 * equal / drawn:.0f}%"])
            print(" | ".join(map(str, rows[-1])), flush=True)  # a long run shows its rows as they come
    print(format_table(["prompts", "n", "temperature", "samples", "equal to greedy", "share"], rows))
    print(f"\n{args.model}, top_p 0.95, up to {args.tokens} new tokens; {platform.machine()}, "
          f"{torch.get_num_threads()} threads, {date.today()}, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
