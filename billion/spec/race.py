"""The speed race: plain decoding, then speculative decoding, on the same prompt and settings.

The two never run at once (they would share the cores); a warm-up comes first so neither pays for
first-call costs. Hugging Face's own assisted generation can run as a reference.
"""

from __future__ import annotations

import statistics
import threading
from contextlib import ExitStack
from dataclasses import replace
from typing import Callable, Iterable, Sequence

import torch

from billion.core.errors import BillionError
from billion.core.noise import timing_notes
from billion.core.generation import (GenerationResult, Message, chat_input_ids, check_length, stop_token_ids,
                                     stream_ids, uses_fallback)
from billion.core.loading import LoadedModel, LoadOptions
from billion.core.model_cache import ModelCache
from billion.core.registry import FALLBACK_STOPS
from billion.core.sampling import SamplingSettings
from billion.spec.cost import break_even_alpha, predicted_speedup
from billion.spec.cross import TextDraft
from billion.spec.decoding import KSchedule, SpeculativeResult, speculative_generate
from billion.spec.drafts import ModelDraft, parameters_per_token, same_tokenizer, self_draft
from billion.spec.lookup import PromptLookupDraft
from billion.spec.numerics import diagnose
from billion.spec.outcome import BuiltDraft, DraftChoice, RaceResult, SweepPoint
from billion.spec.prompts import EXAMPLE_PROMPTS
from billion.spec.quant_draft import SharedCacheDraft, quantized_copy
from billion.spec.reference import ReferenceRun, hf_assisted
from billion.spec.request import PROMPT_LOOKUP_NAMES, RACE_DEFAULTS, RaceRequest, parse_draft  # noqa: F401
from billion.spec.source import DraftSource
from billion.spec.verifier import verifier

__all__ = ["EXAMPLE_PROMPTS", "RACE_DEFAULTS", "RaceRequest", "ReferenceRun", "DraftChoice", "RaceResult",
           "SweepPoint", "parse_draft", "build_draft", "run_race", "k_sweep", "first_difference"]


def output_vocab_size(model) -> int:
    head = model.get_output_embeddings()
    if head is None:
        return int(model.config.vocab_size)
    # A quantized head (billion.core.quant) keeps no float weight, only its shape.
    return int(getattr(head, "out_features", None) or head.weight.shape[0])


def load_draft(models: ModelCache | None, choice: DraftChoice, target: LoadedModel,
               hold: ExitStack | None = None) -> LoadedModel:
    """The draft model of a "model" choice, on the target's device; leased until `hold` closes
    (a race's), so a load by another session cannot evict it mid-race."""
    if models is None:
        raise BillionError(f"Drafting with the model {choice.model} needs the model cache: pass models=.")
    options = LoadOptions(device=str(target.device))
    if hold is None:
        return models.load(choice.model, options)
    loaded, lease = models.acquire(choice.model, options)
    hold.callback(lease.release)
    return loaded


def build_draft(target: LoadedModel, choice: DraftChoice, models: ModelCache | None = None,
                hold: ExitStack | None = None) -> BuiltDraft:
    vocab = output_vocab_size(target.model)
    if choice.kind == "prompt_lookup":
        return BuiltDraft(choice, PromptLookupDraft(vocab))
    if choice.kind == "self":
        return BuiltDraft(choice, self_draft(target.model, choice.layers, vocab))
    if choice.kind == "quant":
        if target.device.type != "cpu":
            raise BillionError(f"quant:{choice.scheme} uses billion's CPU int8/int4 kernels, and the target "
                               f"is on {target.device.type}: run on CPU, or use prompt-lookup or a draft model.")
        name = f"quant:{choice.scheme}"
        copy = quantized_copy(target.model, choice.scheme, target.tokenizer, target.spec.quant_group)
        return BuiltDraft(choice, SharedCacheDraft(copy, vocab, name))
    draft = load_draft(models, choice, target, hold)
    notes = size_notes(target, draft)
    if same_tokenizer(target.tokenizer, draft.tokenizer):
        return BuiltDraft(choice, ModelDraft(draft.model, vocab, name=draft.spec.alias), "same tokenizer", notes)
    source = TextDraft(draft.model, draft.tokenizer, target.tokenizer, vocab, f"{draft.spec.alias} (via text)",
                       eos_ids=stop_token_ids(draft))
    note = (f"{draft.spec.alias} has another tokenizer than {target.spec.alias}: it drafts text, which "
            f"{target.spec.alias}'s tokenizer re-tokenizes (universal assisted generation).")
    return BuiltDraft(choice, source, "via text", (note, *notes))


def size_notes(target: LoadedModel, draft: LoadedModel) -> tuple[str, ...]:
    """A warning when the draft multiplies as many weights per token as the target (it cannot pay)."""
    ours, theirs = parameters_per_token(target.model), parameters_per_token(draft.model)
    if theirs < ours:
        return ()
    return (f"{draft.spec.alias} multiplies {theirs / 1e6:.0f}M weights per token, {theirs / ours:.1f}× "
            f"{target.spec.alias}'s {ours / 1e6:.0f}M: each drafted token costs about a target forward, "
            "so drafting cannot pay off; measured anyway.",)


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first position where two token sequences differ (a length difference counts), or None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def chat_stops(target: LoadedModel) -> tuple[str, ...]:
    """Stop strings plain chat uses for this model (base models run on into the next turn)."""
    return FALLBACK_STOPS if uses_fallback(target) else ()


def run_plain(target: LoadedModel, input_ids: torch.Tensor, settings: SamplingSettings,
              cancel: threading.Event | None = None) -> GenerationResult:
    update = None
    for update in stream_ids(target, input_ids, settings, cancel, chat_stops(target)):
        pass
    assert update is not None and update.result is not None
    return update.result


def run_speculative(target: LoadedModel, input_ids: torch.Tensor, draft: DraftSource,
                    settings: SamplingSettings, schedule: KSchedule,
                    cancel: threading.Event | None = None) -> SpeculativeResult:
    return speculative_generate(
        target.model, input_ids[0].tolist(), draft, settings, schedule, tokenizer=target.tokenizer,
        eos_ids=stop_token_ids(target), stops=chat_stops(target),
        context_length=target.context_length, cancel=cancel)


def reference_run(target: LoadedModel, built: BuiltDraft, schedule: KSchedule, settings: SamplingSettings,
                  input_ids: torch.Tensor) -> ReferenceRun:
    """HF's assisted generation with the same draft source (and its own loop and caches)."""
    kind = "text" if built.pairing == "via text" else built.choice.kind
    return hf_assisted(target, kind, built.source, schedule, settings, input_ids, built.choice.layers)


def _schedule(k: int | KSchedule) -> KSchedule:
    if isinstance(k, KSchedule):
        return k.validate()
    if isinstance(k, bool) or not isinstance(k, int):
        raise BillionError(f"k must be a whole number from 1 to 16 (got {k!r}).")
    return KSchedule(k).validate()


def _prepare(target: LoadedModel, draft: DraftChoice | str, settings: SamplingSettings,
             messages: Sequence[Message], models: ModelCache | None, hold: ExitStack,
             warmup: KSchedule | None, say: Callable[[str], None]
             ) -> tuple[LoadedModel, BuiltDraft, torch.Tensor]:
    """(the target with its cheaper verify path, the draft, the prompt's ids), warmed up with
    `warmup` unless None. Plain decoding and HF run on that same target, whose 1-token steps are
    exactly the loaded model's."""
    settings.validate()
    choice = parse_draft(draft) if isinstance(draft, str) else draft
    input_ids = chat_input_ids(target, messages)
    check_length(target, input_ids.shape[1], settings)
    built = build_draft(target, choice, models, hold)
    target = replace(target, model=verifier(target.model))
    if warmup is not None:
        say("warming up")
        warm_up(target, input_ids, built.source, settings, warmup)
    return target, built, input_ids


def warm_up(target: LoadedModel, input_ids: torch.Tensor, source: DraftSource,
            settings: SamplingSettings, schedule: KSchedule) -> None:
    """A few tokens of each kind of run, so neither timed run pays for first calls and allocations."""
    short = replace(settings, max_new_tokens=min(8, settings.max_new_tokens))
    run_plain(target, input_ids, short)
    run_speculative(target, input_ids, source, short, schedule)


def verify_cost_ratio(plain: GenerationResult, spec: SpeculativeResult) -> float:
    """Mean target time per round over one plain decoding step, both measured in this race."""
    stats = spec.stats
    if not stats.rounds or plain.decode_tokens_per_s <= 0:
        return 0.0
    return (stats.target_s / stats.rounds) * plain.decode_tokens_per_s


def outcome_notes(built: BuiltDraft, spec: SpeculativeResult, speedup: float, verify_cost: float) -> tuple[str, ...]:
    """Why a draft model did not help, in figures: the acceptance it would need to break even."""
    stats = spec.stats
    if built.choice.kind == "prompt_lookup" or speedup >= 1.0 or not stats.drafted:
        return built.notes
    need = break_even_alpha(stats.mean_k, stats.cost_ratio, max(verify_cost, 1.0))
    needed = ("no acceptance could make it pay" if need is None
              else f"it needs a per-token acceptance above {need:.0%} to break even")
    return (*built.notes, f"Speculative decoding was slower than plain ({speedup:.2f}×): {built.source.name} "
            f"had {stats.acceptance_rate:.0%} of its drafts accepted (α = {stats.alpha:.2f}) at "
            f"c = {stats.cost_ratio:.2f} of a target forward per drafted token; {needed}.")


def run_race(target: LoadedModel, draft: DraftChoice | str, k: int | KSchedule, settings: SamplingSettings,
             messages: Sequence[Message], *, reference: bool = False, warmup: bool = True,
             cancel: threading.Event | None = None, progress: Callable[[str], None] | None = None,
             models: ModelCache | None = None) -> RaceResult:
    """Plain decoding, then speculative decoding (and optionally HF's assisted generation).

    models: the cache a draft model loads from (needed only when the draft is a model).
    """
    schedule = _schedule(k)
    say = progress or (lambda _: None)
    with ExitStack() as hold:  # a draft model stays leased until the race ends
        target, built, input_ids = _prepare(target, draft, settings, messages, models, hold,
                                            schedule if warmup else None, say)
        source = built.source
        say("plain decoding")
        plain = run_plain(target, input_ids, settings, cancel)
        say(f"speculative decoding ({source.name}, k={schedule.k}{' dynamic' if schedule.dynamic else ''})")
        spec = run_speculative(target, input_ids, source, settings, schedule, cancel)
        ref = None
        if reference:
            say("Hugging Face assisted generation")
            ref = reference_run(target, built, schedule, settings, input_ids)
        differ = first_difference(plain.token_ids, spec.token_ids) if settings.greedy else None
        divergence = None
        if differ is not None:
            say("replaying both runs where they part")
            divergence = diagnose(target.model, input_ids[0].tolist(), plain.token_ids, spec.token_ids,
                                  spec.rounds, differ, settings.repetition_penalty)
        speedup = _ratio(spec.decode_tokens_per_s, plain.decode_tokens_per_s)
        verify_cost = verify_cost_ratio(plain, spec)
        stats = spec.stats
        return RaceResult(
            target=target.spec.alias, draft=source.name, schedule=schedule, settings=settings,
            prompt_tokens=input_ids.shape[1], plain=plain, speculative=spec, speedup=speedup,
            wall_speedup=_ratio(plain.total_s, spec.total_s),
            lossless=(differ is None) if settings.greedy else None, first_difference=differ, reference=ref,
            verify_cost_ratio=verify_cost,
            predicted_speedup_measured=predicted_speedup(stats.alpha, stats.mean_k, stats.cost_ratio, verify_cost)
            if verify_cost else 0.0,
            divergence=divergence, notes=outcome_notes(built, spec, speedup, verify_cost))


def k_sweep(target: LoadedModel, draft: DraftChoice | str, settings: SamplingSettings,
            messages: Sequence[Message], ks: Iterable[int] = range(1, 9), *, warmup: bool = True,
            progress: Callable[[str], None] | None = None,
            models: ModelCache | None = None, repeats: int = 3) -> tuple[SweepPoint, ...]:
    """Measured vs predicted speedup for each k: the median over `repeats` pairs of (plain,
    speculative) runs, with their range and a note when the range is wide or the machine busy."""
    schedules = [_schedule(k) for k in ks]
    if not schedules:
        raise BillionError("The k sweep needs at least one k, e.g. 1 to 8.")
    if repeats < 1:
        raise BillionError(f"repeats must be at least 1 (got {repeats}).")
    say = progress or (lambda _: None)
    with ExitStack() as hold:  # a draft model stays leased until the sweep ends
        target, built, input_ids = _prepare(target, draft, settings, messages, models, hold,
                                            schedules[0] if warmup else None, say)
        source = built.source
        points = []
        for schedule in schedules:
            ratios, spec, plain = [], None, None
            for attempt in range(repeats):  # interleaved, so a slow spell hits both sides alike
                say(f"k = {schedule.k} (repeat {attempt + 1} of {repeats})")
                plain = run_plain(target, input_ids, settings)
                spec = run_speculative(target, input_ids, source, settings, schedule)
                ratios.append(_ratio(spec.decode_tokens_per_s, plain.decode_tokens_per_s))
            stats = spec.stats
            same = first_difference(plain.token_ids, spec.token_ids) is None
            points.append(SweepPoint(
                k=schedule.k, measured_speedup=statistics.median(ratios),
                predicted_speedup=stats.predicted_speedup, acceptance_rate=stats.acceptance_rate,
                tokens_per_target_forward=stats.tokens_per_target_forward, cost_ratio=stats.cost_ratio,
                identical=same if settings.greedy else None, verify_cost_ratio=verify_cost_ratio(plain, spec),
                low=min(ratios), high=max(ratios), repeats=repeats,
                note="; ".join(timing_notes(ratios, "the speedups of the repeats"))))
        return tuple(points)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0
