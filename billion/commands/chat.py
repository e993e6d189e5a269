"""`chat`: one model streams its answer, or two models answer side by side (`--compare A B`)."""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import textwrap
from collections.abc import Iterator

from billion.context import AppContext
from billion.core.chat import CHAT_DEFAULTS, ChatRequest
from billion.core.generation import GenerationResult, GenerationUpdate
from billion.core.precision import PRECISIONS
from billion.core.registry import DEFAULT_MODEL
from billion.core.sampling import SamplingSettings, sampling_from
from billion.endpoints.client import chat_streams
from billion.endpoints.config import configured_endpoints


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("chat", help="ask one model, or two side by side")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--model", default=DEFAULT_MODEL, help="alias, hub id, folder or .gguf")
    group.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two models side by side")
    parser.add_argument("prompt")
    parser.add_argument("--revision", help="hub revision of the model(s), e.g. a Pythia checkpoint: step3000")
    add_generation_args(parser, CHAT_DEFAULTS)
    parser.set_defaults(func=run)


def add_generation_args(parser: argparse.ArgumentParser, defaults: SamplingSettings) -> None:
    """Sampling, precision and system-message options; their defaults are the feature's own."""
    parser.add_argument("--system", default="", help="system message")
    parser.add_argument("--temperature", type=float, default=defaults.temperature,
                        help=f"0 = greedy (default {defaults.temperature:g})")
    parser.add_argument("--top-p", type=float, default=defaults.top_p)
    parser.add_argument("--top-k", type=int, default=defaults.top_k)
    parser.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty)
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--quantization", default="none", choices=["none", "int8", "int4"])
    parser.add_argument("--precision", default=None, choices=list(PRECISIONS),
                        help="one choice instead of --dtype/--quantization; auto = this machine's fast "
                             "precision (on CPU the measured choice, see the Leaderboard)")


def precision_from(args: argparse.Namespace) -> str:
    """--precision, else the older --quantization / --dtype pair, as one precision."""
    if getattr(args, "precision", None):
        return args.precision
    return args.quantization if args.quantization != "none" else args.dtype


def request_from(args: argparse.Namespace) -> ChatRequest:
    names = tuple(args.compare or (args.model,))
    if getattr(args, "revision", None):  # the registry's alias@revision form
        names = tuple(f"{name}@{args.revision}" for name in names)
    return ChatRequest(args.prompt, models=names, system=args.system or "",
                       settings=sampling_from(vars(args), CHAT_DEFAULTS),
                       precision=precision_from(args))


def figures(result: GenerationResult) -> str:
    host = getattr(result, "host", None)
    if host is not None:  # an endpoint model's answer
        return (f"{result.completion_tokens} tokens, {result.decode_tokens_per_s:.1f} tokens/s, "
                f"first token {result.ttft_s:.2f} s over the network, from {host}, "
                f"stop: {result.finish_reason}")
    return (f"{len(result.token_ids)} tokens, {result.decode_tokens_per_s:.1f} tokens/s ({result.precision}), "
            f"first token {result.ttft_s:.2f} s, peak memory {result.peak_memory_bytes / 2**20:.0f} MiB, "
            f"stop: {result.finish_reason}")


def run(args: argparse.Namespace, ctx: AppContext) -> int:
    request = request_from(args).validated(ctx.limits)
    streams = chat_streams(request, ctx.models, configured_endpoints(ctx.settings.models_file))
    if len(streams) == 1:
        loaded, stream = streams[0]
        print(f"[{loaded.label}]", file=sys.stderr)
        update = None
        for update in stream:
            print(update.new_text, end="", flush=True)
        print()
        print(f"-- {figures(update.result)}")  # type: ignore[union-attr]
        return 0
    # One after the other, so each model's figures are its own (not shared cores).
    print(side_by_side([(loaded.label, final(stream)) for loaded, stream in streams]))
    return 0


def final(stream: Iterator[GenerationUpdate]) -> GenerationResult:
    update = None
    for update in stream:
        pass
    assert update is not None and update.result is not None
    return update.result


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
