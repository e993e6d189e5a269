"""`race`: plain vs speculative decoding on one prompt: figures, acceptance, speedup, lossless check."""

from __future__ import annotations

import argparse
import sys

from billion.commands.chat import add_generation_args
from billion.context import AppContext
from billion.core.errors import BillionError
from billion.core.loading import LoadedModel
from billion.core.sampling import sampling_from
from billion.endpoints.config import RACE_LOCAL_ONLY, is_endpoint_name
from billion.spec.decoding import MAX_K, KSchedule
from billion.spec.race import RACE_DEFAULTS, RaceRequest, RaceResult, SweepPoint, k_sweep, run_race
from billion.spec.request import suggested_k

DEFAULT = RaceRequest("")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("race", help="plain vs speculative decoding: speedup and lossless check")
    parser.add_argument("--target", default=DEFAULT.target, help="alias, hub id, folder or .gguf")
    parser.add_argument("--draft", default=DEFAULT.draft,
                        help="prompt-lookup, self:N (the target's first N layers), quant:int8 / "
                             "quant:int4 (the target itself quantized), or a model's alias (another "
                             "tokenizer drafts through text)")
    parser.add_argument("--k", type=int, default=None,
                        help=f"tokens drafted per round (1..{MAX_K}); default: 10 for prompt lookup and "
                             "quant drafts (they stop earlier on their own), 4 for model drafts")
    parser.add_argument("--dynamic", action="store_true",
                        help="grow k after a fully accepted round, shrink it after a rejection")
    parser.add_argument("--reference", action="store_true",
                        help="also run Hugging Face's assisted generation with the same draft and k")
    parser.add_argument("--sweep", action="store_true", help="measured vs predicted speedup for k = 1..8")
    parser.add_argument("--no-warmup", action="store_true", help="skip the warm-up runs")
    parser.add_argument("prompt")
    add_generation_args(parser, RACE_DEFAULTS)
    parser.set_defaults(func=run)


def dtype_and_quantization(args: argparse.Namespace) -> dict[str, str]:
    """--precision (int8/int4 are quantizations, the rest dtypes), else --dtype and --quantization."""
    if getattr(args, "precision", None):
        quantized = args.precision in ("int8", "int4")
        return {"dtype": "auto" if quantized else args.precision,
                "quantization": args.precision if quantized else "none"}
    return {"dtype": args.dtype, "quantization": args.quantization}


def request_from(args: argparse.Namespace) -> RaceRequest:
    k = args.k if args.k is not None else suggested_k(args.draft)
    return RaceRequest(args.prompt, target=args.target, draft=args.draft,
                       schedule=KSchedule(k, dynamic=args.dynamic),
                       settings=sampling_from(vars(args), RACE_DEFAULTS), reference=args.reference,
                       warmup=not args.no_warmup, **dtype_and_quantization(args),
                       system=args.system or "")


def run(args: argparse.Namespace, ctx: AppContext) -> int:
    if is_endpoint_name(args.target) or is_endpoint_name(args.draft):
        raise BillionError(RACE_LOCAL_ONLY)
    request = request_from(args).validated(ctx.limits)
    with ctx.models.lease(request.target, request.load_options()) as target:  # held for the whole race
        return _race(args, request, target, ctx)


def _race(args: argparse.Namespace, request: RaceRequest, target: LoadedModel, ctx: AppContext) -> int:
    progress = (lambda step: print(f"[{step}]", file=sys.stderr))
    if args.sweep:
        points = k_sweep(target, request.draft, request.settings, request.messages, warmup=request.warmup,
                         progress=progress, models=ctx.models)
        print(sweep_table(points))
        return 0
    result = run_race(target, request.draft, request.schedule, request.settings, request.messages,
                      reference=request.reference, warmup=request.warmup, progress=progress,
                      models=ctx.models)
    print(report(result, target.label))
    return 0


def report(result: RaceResult, target_label: str) -> str:
    plain, spec, stats = result.plain, result.speculative, result.speculative.stats
    k = f"k={result.schedule.k}" + (" dynamic" if result.schedule.dynamic else "")
    lines = [f"target {target_label}, draft {result.draft}, {k}, prompt {result.prompt_tokens} tokens",
             "", "-- plain output:", plain.text]
    if spec.text != plain.text:
        lines += ["", "-- speculative output:", spec.text]
    lines += [
        "",
        f"plain       : {len(plain.token_ids)} tokens, {plain.decode_tokens_per_s:.1f} tokens/s, "
        f"first token {plain.ttft_s:.2f} s, total {plain.total_s:.2f} s, stop: {plain.finish_reason}",
        f"speculative : {len(spec.token_ids)} tokens, {spec.decode_tokens_per_s:.1f} tokens/s, "
        f"first token {spec.ttft_s:.2f} s, total {spec.total_s:.2f} s, stop: {spec.finish_reason}",
        f"acceptance  : {stats.acceptance_rate:.0%} ({stats.accepted}/{stats.drafted} drafted), "
        f"{stats.tokens_per_target_forward:.2f} tokens per target forward, {stats.rounds} rounds, "
        f"draft {stats.draft_s:.2f} s, target {stats.target_s:.2f} s",
        f"verify cost : a verify forward of {stats.mean_k + 1:.1f} tokens costs "
        f"{result.verify_cost_ratio:.2f} plain steps (measured; the paper assumes 1)",
        f"speedup     : {result.speedup:.2f}x decode ({result.wall_speedup:.2f}x wall); predicted "
        f"{stats.predicted_speedup:.2f}x (alpha {stats.alpha:.2f}, c {stats.cost_ratio:.3f}), "
        f"{result.predicted_speedup_measured:.2f}x with the measured verify cost",
        f"lossless    : {lossless_line(result)}",
    ]
    lines += [f"note        : {note}" for note in result.notes]
    ref = result.reference
    if ref is not None:
        same = "same output as plain" if ref.token_ids == plain.token_ids else "output differs from plain"
        decode = spec.decode_tokens_per_s / ref.decode_tokens_per_s if ref.decode_tokens_per_s else 0.0
        lines.append(f"HF assisted : {ref.method}: {len(ref.token_ids)} tokens in {ref.total_s:.2f} s "
                     f"({ref.decode_tokens_per_s:.1f} tokens/s decode), {same}; ours is {decode:.2f}x its "
                     f"decode speed ({ref.total_s / spec.total_s:.2f}x wall)")
    return "\n".join(lines)


def lossless_line(result: RaceResult) -> str:
    if result.verdict == "sampling":
        return "sampling (temperature > 0): outputs differ by chance, the distribution is the target's"
    if result.verdict == "identical":
        return "yes, greedy outputs are identical"
    d = result.divergence
    if d is not None and d.numerics:
        return (f"differs by numerics from token {d.position}: a near-tie (plain picks {d.plain_token} over "
                f"{d.speculative_token} by {d.plain_margin:.2g}, speculative the other way by "
                f"{d.speculative_margin:.2g}); the runs' logits differ by {d.logit_difference:.2g} there and by "
                f"up to {d.agreeing_difference:.2g} before it (a (k+1)-token verify vs a 1-token step)")
    detail = "" if d is None else (f" (logits differ by {d.logit_difference:.2g}, margin {d.margin:.2g}: "
                                   "more than rounding explains)")
    return f"NO, greedy outputs differ from token {result.first_difference}{detail}"


def sweep_table(points: tuple[SweepPoint, ...]) -> str:
    lines = ["k  measured  predicted  acceptance  tokens/forward  verify cost  identical"]
    for p in points:
        same = "-" if p.identical is None else ("yes" if p.identical else "NO")
        lines.append(f"{p.k:<2} {p.measured_speedup:>7.2f}x {p.predicted_speedup:>9.2f}x "
                     f"{p.acceptance_rate:>10.0%} {p.tokens_per_target_forward:>15.2f} "
                     f"{p.verify_cost_ratio:>11.2f}  {same}")
    return "\n".join(lines)
