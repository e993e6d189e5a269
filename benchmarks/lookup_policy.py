"""Prompt-lookup policies replayed without timing noise (not a test).

Greedy speculative decoding emits exactly the target's greedy output, so how many rounds a draft
policy needs depends only on that output. This script decodes each grounded prompt once (plain,
greedy), then replays the output through each policy: every round, the policy proposes, the
proposal is checked against the true continuation, and the round costs 1 + slope * (tokens
drafted) 1-token steps (the verify cost model of billion.spec.cost). It prints tokens per unit of
cost, i.e. the speedup the policy would reach if verify cost were exactly that line and drafting
free, and tokens per target forward, per prompt and as geometric means; a busy machine cannot move
these figures.

    .venv/bin/python benchmarks/lookup_policy.py [--slopes 0.03,0.1,0.3] [--k 10]

Policies: fixed = the longest of 1-3-token matches, its next k tokens every round (transformers'
prompt lookup, and billion's before issue 16); adaptive = billion.spec.lookup.PromptLookupDraft
(match size and draft length from what was accepted and from the cost line; copy resumes where it
left off).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from billion.core.generation import chat_input_ids  # noqa: E402
from billion.core.loading import load_fresh  # noqa: E402
from billion.core.sampling import SamplingSettings  # noqa: E402
from billion.spec.lookup import PromptLookupDraft  # noqa: E402
from billion.spec.prompts import PROMPT_CASES  # noqa: E402
from billion.spec.race import run_plain  # noqa: E402

GREEDY = SamplingSettings(temperature=0)


def replay(draft, prompt: list[int], output: list[int], k: int, slope: float) -> tuple[float, float]:
    """(tokens per unit of verify cost, tokens per target forward) of one greedy output."""
    draft.start(prompt)
    context, done, cost, rounds = list(prompt), 0, 0.0, 0
    while done < len(output):
        room = min(k, len(output) - done - 1)
        proposal = draft.propose(context, room, GREEDY, None).tokens if room > 0 else ()
        kept = 0
        while kept < len(proposal) and proposal[kept] == output[done + kept]:
            kept += 1
        seconds = 1 + slope * len(proposal)
        if hasattr(draft, "observe"):
            draft.observe(len(proposal), kept, seconds)
        emitted = output[done:done + kept + 1]
        context += emitted
        done += len(emitted)
        cost += seconds
        rounds += 1
    return len(output) / cost, len(output) / rounds


def policies(vocab: int) -> dict:
    return {"fixed": lambda: PromptLookupDraft(vocab, max_ngram=3, adaptive=False),
            "adaptive": lambda: PromptLookupDraft(vocab)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", default="smollm2-135m")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--slopes", default="0.03,0.1,0.3")
    args = parser.parse_args()
    target = load_fresh(args.target)
    settings = SamplingSettings(temperature=0, max_new_tokens=args.max_new_tokens)
    cases = [c for c in PROMPT_CASES if c.kind != "open"]
    outputs = {}
    for case in cases:
        ids = chat_input_ids(target, [{"role": "user", "content": case.text}])
        outputs[case.name] = (ids[0].tolist(), list(run_plain(target, ids, settings).token_ids))
    vocab = len(target.tokenizer)
    for slope in (float(s) for s in args.slopes.split(",")):
        print(f"\n### verify cost 1 + {slope} x drafted tokens, k <= {args.k}\n")
        print("| prompt | kind | " + " | ".join(f"{p} speedup | {p} tok/fwd" for p in policies(vocab)) + " |")
        print("|---|---|" + "---|---|" * len(policies(vocab)))
        rates: dict[str, dict[str, float]] = {p: {} for p in policies(vocab)}
        for case in cases:
            cells = []
            for name, make in policies(vocab).items():
                draft = make()
                prompt, output = outputs[case.name]
                replay(draft, prompt, output[:8], args.k, slope)  # a warm-up, as the race does
                rate, per_forward = replay(draft, prompt, output, args.k, slope)
                rates[name][case.name] = rate
                cells += [f"{rate:.2f}", f"{per_forward:.2f}"]
            print(f"| {case.name} | {case.kind} | " + " | ".join(cells) + " |")
        for kind in ("copy", "grounded"):
            names = [c.name for c in cases if c.kind == kind]
            means = [math.exp(sum(math.log(rates[p][n]) for n in names) / len(names)) for p in rates]
            print(f"| geo-mean | {kind} | " + " | ".join(f"{m:.2f} | " for m in means) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
