"""`chat`: one model streams its answer, or two models answer side by side (`--compare A B`)."""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import textwrap

from billion.core.generation import GenerationResult
from billion.core.loading import LoadOptions, load_model
from billion.endpoints.client import generate_answer, stream_answer
from billion.endpoints.config import find_endpoint, is_endpoint_name
from billion.core.registry import DEFAULT_MODEL
from billion.core.sampling import SamplingSettings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("chat", help="ask one model, or two side by side")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", default=DEFAULT_MODEL, help="alias, hub id, folder or .gguf")
    group.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two models side by side")
    parser.add_argument("prompt")
    parser.add_argument("--revision", help="hub revision of the model(s), e.g. a Pythia checkpoint: step3000")
    add_generation_args(parser)
    parser.set_defaults(func=run)


def add_generation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", default=None, help="system message")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--repetition-penalty", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--quantization", default="none", choices=["none", "int8", "int4"])


def settings_from(args: argparse.Namespace) -> SamplingSettings:
    return SamplingSettings(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                            repetition_penalty=args.repetition_penalty,
                            max_new_tokens=args.max_new_tokens, seed=args.seed).validate()


def messages_from(args: argparse.Namespace) -> list[dict]:
    system = [{"role": "system", "content": args.system}] if args.system else []
    return system + [{"role": "user", "content": args.prompt}]


def figures(result: GenerationResult) -> str:
    host = getattr(result, "host", None)
    if host is not None:  # an endpoint model's answer
        return (f"{result.completion_tokens} tokens, {result.decode_tokens_per_s:.1f} tokens/s, "
                f"first token {result.ttft_s:.2f} s over the network, from {host}, "
                f"stop: {result.finish_reason}")
    return (f"{len(result.token_ids)} tokens, {result.decode_tokens_per_s:.1f} tokens/s, "
            f"first token {result.ttft_s:.2f} s, peak memory {result.peak_memory_bytes / 2**20:.0f} MiB, "
            f"stop: {result.finish_reason}")


def open_model(name: str, options: LoadOptions):
    """(model or endpoint, label): `endpoint:<alias>` names a model of BILLION_MODELS_FILE."""
    if is_endpoint_name(name):
        endpoint = find_endpoint(name)
        return endpoint, f"{endpoint.name} ({endpoint.label}, over the network)"
    loaded = load_model(name, options)
    return loaded, loaded.label


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    options = LoadOptions(dtype=args.dtype, quantization=args.quantization)
    messages = messages_from(args)
    if args.revision:  # the registry's alias@revision form
        args.model = f"{args.model}@{args.revision}"
        args.compare = [f"{name}@{args.revision}" for name in args.compare or ()] or None
    if not args.compare:
        loaded, label = open_model(args.model, options)
        print(f"[{label}]", file=sys.stderr)
        update = None
        for update in stream_answer(loaded, messages, settings):
            print(update.new_text, end="", flush=True)
        print()
        print(f"-- {figures(update.result)}")  # type: ignore[union-attr]
        return 0
    results = []
    for name in args.compare:
        loaded, label = open_model(name, options)
        results.append((label, generate_answer(loaded, messages, settings)))
    print(side_by_side(results))
    return 0


def side_by_side(results: list[tuple[str, GenerationResult]]) -> str:
    width = max(30, (shutil.get_terminal_size((120, 20)).columns - 3) // len(results))
    columns = []
    for label, result in results:
        body = [line for para in result.text.splitlines() or [""]
                for line in (textwrap.wrap(para, width) or [""])]
        stats = textwrap.wrap(figures(result), width)
        columns.append([label, "-" * min(width, len(label))] + body + [""] + stats)
    rows = itertools.zip_longest(*columns, fillvalue="")
    return "\n".join(" | ".join(cell.ljust(width) for cell in row).rstrip() for row in rows)
