"""Multiple-choice scoring speed: billion's shared-context scorer vs one full forward pass per choice.

Same model, same items, one run; each item goes through every method in turn, so a change in the
machine's load hits all methods alike. For the cloze format it also measures the other batching
choice (all choices of an item as one right-padded batch). Then it scores the whole offline suite
to report accuracy.

    .venv/bin/python benchmarks/mc_scoring.py [--model smollm2-135m] [--items 40] [--threads N] [--no-accuracy]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from billion.bench import mc  # noqa: E402
from billion.bench.tasks import DEFAULT_SEED, McTask, build_prompt, get_task  # noqa: E402
from billion.core.loading import load_fresh  # noqa: E402

Scorer = Callable[[torch.nn.Module, list[int], Sequence[list[int]]], list[float]]
Encoded = list[tuple[list[int], list[list[int]]]]
TASKS = ("billion-mc", "billion-mc-cloze")


@torch.inference_mode()
def padded_batch_logprobs(model, context_ids: list[int], continuations: Sequence[list[int]]) -> list[float]:
    """The alternative to a shared cache: context + each continuation as one right-padded batch."""
    seqs = [(context_ids + cont)[:-1] for cont in continuations]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    logprobs = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    totals = []
    for row, cont in enumerate(continuations):
        positions = torch.arange(len(context_ids) - 1, len(context_ids) - 1 + len(cont))
        totals.append(float(logprobs[row, positions, torch.tensor(cont)].sum()))
    return totals


NAIVE = "naive: one full pass per choice"
PADDED = "padded batch of all choices"
SHARED = "billion: context once, KV shared"


def methods_for(task: McTask) -> dict[str, Scorer]:
    methods = {NAIVE: mc.continuation_logprobs_full, PADDED: padded_batch_logprobs, SHARED: mc.continuation_logprobs}
    if task.choice_format == "letters":
        # Four one-token choices: a padded batch holds exactly the naive loop's tokens.
        del methods[PADDED]
    return methods


def encoded_items(loaded, task: McTask, n_items: int) -> Encoded:
    data = task.loader()
    out = []
    for item in mc.select_items(data.items, n_items, DEFAULT_SEED):
        prompt = build_prompt(task, data, item)
        out.append(mc.encode_choices(loaded.tokenizer, prompt.context, prompt.continuations))
    return out


def time_methods(model, methods: dict[str, Scorer], encoded: Encoded) -> tuple[dict[str, float], dict[str, list]]:
    for scorer in methods.values():
        scorer(model, *encoded[0])  # warm-up, not timed
    seconds = {label: 0.0 for label in methods}
    scores: dict[str, list[list[float]]] = {label: [] for label in methods}
    for number, (ctx, conts) in enumerate(encoded, 1):
        for label, scorer in methods.items():
            start = time.perf_counter()
            scores[label].append(scorer(model, ctx, conts))
            seconds[label] += time.perf_counter() - start
        print(f"  {number}/{len(encoded)}", file=sys.stderr, flush=True)
    return seconds, scores


def speed_table(loaded, n_items: int) -> None:
    print("| task | method | items | context tokens (mean) | seconds | items/s | vs naive | max abs diff vs naive |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in TASKS:
        task = get_task(name)
        encoded = encoded_items(loaded, task, n_items)
        seconds, scores = time_methods(loaded.model, methods_for(task), encoded)
        mean_ctx = sum(len(ctx) for ctx, _ in encoded) / len(encoded)
        for label in seconds:
            diff = max(abs(a - b) for row, ref in zip(scores[label], scores[NAIVE]) for a, b in zip(row, ref))
            print(f"| {name} | {label} | {len(encoded)} | {mean_ctx:.0f} | {seconds[label]:.1f} | "
                  f"{len(encoded) / seconds[label]:.3f} | {seconds[NAIVE] / seconds[label]:.2f}x | {diff:.1e} |",
                  flush=True)


def pct(estimate) -> str:
    return (f"{estimate.mean * 100:.1f}% ± {estimate.stderr * 100:.1f} "
            f"[{estimate.ci_low * 100:.1f}, {estimate.ci_high * 100:.1f}]")


def accuracy_table(loaded) -> None:
    print("\n| task (reported metric) | n | acc ± stderr [95% CI] | acc_norm ± stderr [95% CI] | chance | "
          "reported metric by category | seconds |")
    print("|---|---:|---|---|---:|---|---:|")
    for name in TASKS:
        result = mc.score_task(loaded.model, loaded.tokenizer, get_task(name))
        groups = ", ".join(f"{g} {e.mean * 100:.0f}%" for g, e in result.by_group)
        print(f"| {name} ({result.metric}) | {result.n} | {pct(result.acc)} | {pct(result.acc_norm)} | "
              f"{result.chance * 100:.0f}% | {groups} | {result.elapsed_s:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--no-accuracy", action="store_true", help="skip scoring the whole suite")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); 1 is steadier on a CPU shared with other jobs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_fresh(args.model)
    print(f"model {loaded.label}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.machine()}\n", flush=True)
    speed_table(loaded, args.items)
    if not args.no_accuracy:
        accuracy_table(loaded)


if __name__ == "__main__":
    main()
