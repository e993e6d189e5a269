"""The speed race: plain decoding, then speculative decoding, on the same prompt and settings.

The two never run at once (they would share the cores); a warm-up comes first so neither pays for
first-call costs. Hugging Face's own assisted generation can run as a reference.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Literal, Sequence

import torch

from billion.spec.drafts import (DraftSource, ModelDraft, PromptLookupDraft, check_same_tokenizer,
                            parameter_count, self_draft)
from billion.core.errors import BillionError
from billion.core.generation import (GenerationResult, Message, chat_input_ids, check_length, stop_token_ids,
                                stream_ids, uses_fallback)
from billion.core.limits import DEFAULT_LIMITS, Limits, check_max_new_tokens, check_prompt, check_system
from billion.core.loading import LoadedModel, LoadOptions, ModelCache
from billion.core.registry import DEFAULT_MODEL, FALLBACK_STOPS
from billion.core.sampling import SamplingSettings
from billion.spec.decoding import KSchedule, SpeculativeResult, speculative_generate

DraftKind = Literal["model", "prompt_lookup", "self"]
PROMPT_LOOKUP_NAMES = ("prompt-lookup", "prompt_lookup", "lookup", "pld")

# Grounded prompts: the answer copies spans of the prompt, where prompt lookup shines.
_PASSAGE = ("The Amazon rainforest covers much of the Amazon basin of South America. The basin covers "
            "seven million square kilometres, of which five and a half million are covered by the "
            "rainforest. The region includes territory belonging to nine nations; the majority of the "
            "forest is contained within Brazil, with 60% of the rainforest, followed by Peru with 13%, "
            "and Colombia with 10%.")
EXAMPLE_PROMPTS: tuple[tuple[str, str], ...] = (
    ("repeat", f"Repeat the following text exactly, word for word:\n\n{_PASSAGE}"),
    ("edit", "Rewrite this text, replacing 'rainforest' with 'jungle' and changing nothing else:"
             f"\n\n{_PASSAGE}"),
    ("answer from text", f"{_PASSAGE}\n\nUsing only the text above, which countries hold most of the "
                         "forest, and what share does each hold? Quote the text."),
    ("summarise", f"Summarise this text in two sentences, reusing its wording:\n\n{_PASSAGE}"),
    ("code edit", "Add type hints to this function and return it unchanged otherwise:\n\n"
                  "def mean(values):\n    total = 0\n    for value in values:\n        total += value\n"
                  "    return total / len(values)\n"),
    ("open question", "Why is the sky blue? Answer in three sentences."),
)


#: how a race samples unless asked otherwise: greedy, so the lossless check applies
RACE_DEFAULTS = SamplingSettings(temperature=0.0, max_new_tokens=128)


@dataclass(frozen=True)
class RaceRequest:
    """One race as a person asks for it; the race tab and `python -m billion race` both fill this."""

    prompt: str
    #: the model whose output both runs must produce: alias, hub id, local folder or .gguf
    target: str = DEFAULT_MODEL
    #: as parse_draft reads it: prompt-lookup, self:N or a draft model's alias
    draft: str = "prompt-lookup"
    schedule: KSchedule = KSchedule(4)
    settings: SamplingSettings = RACE_DEFAULTS
    #: also run Hugging Face's assisted generation with the same draft and k
    reference: bool = False
    #: a few tokens of each run first, so neither timed run pays for first calls
    warmup: bool = True
    dtype: str = "auto"
    quantization: str = "none"
    #: system message ("" = none)
    system: str = ""

    @property
    def messages(self) -> list[Message]:
        system = [{"role": "system", "content": self.system}] if self.system.strip() else []
        return system + [{"role": "user", "content": self.prompt}]

    def validated(self, limits: Limits = DEFAULT_LIMITS) -> RaceRequest:
        """Checks that need no model; the engine checks the rest (context, draft size, tokenizer)."""
        prompt = check_prompt(self.prompt, limits.race_prompt_chars, "a race", "type one or pick an example")
        if not self.target:
            raise BillionError("Pick a target model first (the list shows the models that can load here).")
        parse_draft(self.draft)
        system = check_system(self.system, limits)
        settings = self.settings.validate()
        check_max_new_tokens(settings.max_new_tokens, limits)
        return replace(self, prompt=prompt, system=system, schedule=self.schedule.validate(),
                       settings=settings)

    def load_options(self) -> LoadOptions:
        return LoadOptions(dtype=self.dtype, quantization=self.quantization)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DraftChoice:
    """Which draft source to race with, as a person names it."""

    kind: DraftKind
    #: registry alias (or path) of the draft model, for kind "model"
    model: str = ""
    #: how many of the target's layers draft, for kind "self"
    layers: int = 0

    @property
    def label(self) -> str:
        labels = {"model": self.model, "prompt_lookup": "prompt-lookup", "self": f"self:{self.layers}"}
        return labels[self.kind]


@dataclass(frozen=True)
class ReferenceRun:
    """Hugging Face's assisted generation on the same target, settings and prompt."""

    method: str
    text: str
    token_ids: tuple[int, ...]
    total_s: float
    #: output tokens per second of the whole call (HF reports no first-token time)
    tokens_per_s: float


@dataclass(frozen=True)
class RaceResult:
    target: str
    draft: str
    schedule: KSchedule
    settings: SamplingSettings
    prompt_tokens: int
    plain: GenerationResult
    speculative: SpeculativeResult
    #: speculative decode tokens/s over plain decode tokens/s
    speedup: float
    #: plain total time over speculative total time (prefill included)
    wall_speedup: float
    #: greedy only: are both outputs identical? None when sampling (outputs differ by chance)
    lossless: bool | None
    #: greedy only: the first token position where the outputs differ, None if they do not
    first_difference: int | None
    reference: ReferenceRun | None = None


@dataclass(frozen=True)
class SweepPoint:
    k: int
    measured_speedup: float
    predicted_speedup: float
    acceptance_rate: float
    tokens_per_target_forward: float
    cost_ratio: float
    #: greedy only: output identical to plain decoding
    identical: bool | None


def parse_draft(text: str) -> DraftChoice:
    """'prompt-lookup', 'self:N' or a draft model's alias."""
    name = text.strip()
    if not name:
        raise BillionError("No draft given: use prompt-lookup, self:N, or a smaller model's alias.")
    if name.lower() in PROMPT_LOOKUP_NAMES:
        return DraftChoice("prompt_lookup")
    if name.lower().startswith("self:"):
        try:
            layers = int(name.split(":", 1)[1])
        except ValueError:
            raise BillionError(f"'{name}': write self:N with N the number of the target's layers that "
                               "draft, e.g. self:8.") from None
        return DraftChoice("self", layers=layers)
    return DraftChoice("model", model=name)


def output_vocab_size(model) -> int:
    head = model.get_output_embeddings()
    return int(head.weight.shape[0]) if head is not None else int(model.config.vocab_size)


def load_draft(models: ModelCache | None, choice: DraftChoice, target: LoadedModel) -> LoadedModel:
    """The draft model of a "model" choice, on the target's device."""
    if models is None:
        raise BillionError(f"Drafting with the model {choice.model} needs the model cache: pass models=.")
    return models.load(choice.model, LoadOptions(device=str(target.device)))


def build_draft(target: LoadedModel, choice: DraftChoice, models: ModelCache | None = None) -> DraftSource:
    vocab = output_vocab_size(target.model)
    if choice.kind == "prompt_lookup":
        return PromptLookupDraft(vocab)
    if choice.kind == "self":
        return self_draft(target.model, choice.layers, vocab)
    draft = load_draft(models, choice, target)
    if parameter_count(draft.model) > parameter_count(target.model):
        raise BillionError(f"The draft {draft.spec.alias} is larger than the target {target.spec.alias}, "
                           "so drafting would cost more than it saves: pick a smaller draft, "
                           "prompt-lookup or self:N.")
    check_same_tokenizer(target.tokenizer, draft.tokenizer, target.spec.alias, draft.spec.alias)
    return ModelDraft(draft.model, vocab, name=draft.spec.alias)


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


def hf_assisted(target: LoadedModel, choice: DraftChoice, schedule: KSchedule, settings: SamplingSettings,
                input_ids: torch.Tensor, models: ModelCache | None = None) -> ReferenceRun:
    """transformers' own assisted generation with the same draft source and k (fixed schedule)."""
    kwargs: dict = {"max_new_tokens": settings.max_new_tokens, "do_sample": not settings.greedy,
                    "eos_token_id": sorted(stop_token_ids(target)),
                    "pad_token_id": target.tokenizer.pad_token_id,
                    "repetition_penalty": settings.repetition_penalty}
    if not settings.greedy:
        # top_k=0 switches transformers' top-k off, as in billion.core.sampling (None would mean its default 50).
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=settings.top_k)
    if choice.kind == "prompt_lookup":
        kwargs["prompt_lookup_num_tokens"] = schedule.k
        method = f"prompt_lookup_num_tokens={schedule.k}"
    else:
        if choice.kind == "self":
            kwargs["assistant_early_exit"] = choice.layers
            method = f"assistant_early_exit={choice.layers}"
        else:
            kwargs["assistant_model"] = load_draft(models, choice, target).model
            method = f"assistant_model={choice.model}"
        kwargs.update(num_assistant_tokens=schedule.k, assistant_confidence_threshold=0.0,
                      num_assistant_tokens_schedule="heuristic" if schedule.dynamic else "constant")
    if settings.seed is not None:
        torch.manual_seed(settings.seed)
    started = time.perf_counter()
    with torch.inference_mode():
        out = target.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
    total = time.perf_counter() - started
    new = out[0, input_ids.shape[1]:].tolist()
    eos = stop_token_ids(target)
    ids = tuple(new[:next((i for i, t in enumerate(new) if t in eos), len(new))])
    return ReferenceRun(method, target.tokenizer.decode(ids, skip_special_tokens=True), ids, total,
                        len(ids) / total if total > 0 else 0.0)


def _schedule(k: int | KSchedule) -> KSchedule:
    if isinstance(k, KSchedule):
        return k.validate()
    if isinstance(k, bool) or not isinstance(k, int):
        raise BillionError(f"k must be a whole number from 1 to 16 (got {k!r}).")
    return KSchedule(k).validate()


def _prepare(target: LoadedModel, draft: DraftChoice | str, settings: SamplingSettings,
             messages: Sequence[Message], models: ModelCache | None
             ) -> tuple[DraftChoice, DraftSource, torch.Tensor]:
    settings.validate()
    choice = parse_draft(draft) if isinstance(draft, str) else draft
    input_ids = chat_input_ids(target, messages)
    check_length(target, input_ids.shape[1], settings)
    return choice, build_draft(target, choice, models), input_ids


def warm_up(target: LoadedModel, input_ids: torch.Tensor, source: DraftSource,
            settings: SamplingSettings, schedule: KSchedule) -> None:
    """A few tokens of each kind of run, so neither timed run pays for first calls and allocations."""
    short = replace(settings, max_new_tokens=min(8, settings.max_new_tokens))
    run_plain(target, input_ids, short)
    run_speculative(target, input_ids, source, short, schedule)


def run_race(target: LoadedModel, draft: DraftChoice | str, k: int | KSchedule, settings: SamplingSettings,
             messages: Sequence[Message], *, reference: bool = False, warmup: bool = True,
             cancel: threading.Event | None = None, progress: Callable[[str], None] | None = None,
             models: ModelCache | None = None) -> RaceResult:
    """Plain decoding, then speculative decoding (and optionally HF's assisted generation).

    models: the cache a draft model loads from (needed only when the draft is a model).
    """
    schedule = _schedule(k)
    choice, source, input_ids = _prepare(target, draft, settings, messages, models)
    say = progress or (lambda _: None)
    if warmup:
        say("warming up")
        warm_up(target, input_ids, source, settings, schedule)
    say("plain decoding")
    plain = run_plain(target, input_ids, settings, cancel)
    say(f"speculative decoding ({source.name}, k={schedule.k}{' dynamic' if schedule.dynamic else ''})")
    spec = run_speculative(target, input_ids, source, settings, schedule, cancel)
    ref = None
    if reference:
        say("Hugging Face assisted generation")
        ref = hf_assisted(target, choice, schedule, settings, input_ids, models)
    differ = first_difference(plain.token_ids, spec.token_ids) if settings.greedy else None
    return RaceResult(
        target=target.spec.alias, draft=source.name, schedule=schedule, settings=settings,
        prompt_tokens=input_ids.shape[1], plain=plain, speculative=spec,
        speedup=_ratio(spec.decode_tokens_per_s, plain.decode_tokens_per_s),
        wall_speedup=_ratio(plain.total_s, spec.total_s),
        lossless=(differ is None) if settings.greedy else None, first_difference=differ, reference=ref)


def k_sweep(target: LoadedModel, draft: DraftChoice | str, settings: SamplingSettings,
            messages: Sequence[Message], ks: Iterable[int] = range(1, 9), *, warmup: bool = True,
            progress: Callable[[str], None] | None = None,
            models: ModelCache | None = None) -> tuple[SweepPoint, ...]:
    """Measured vs predicted speedup for each k, against one plain run."""
    schedules = [_schedule(k) for k in ks]
    if not schedules:
        raise BillionError("The k sweep needs at least one k, e.g. 1 to 8.")
    _, source, input_ids = _prepare(target, draft, settings, messages, models)
    say = progress or (lambda _: None)
    if warmup:
        say("warming up")
        warm_up(target, input_ids, source, settings, schedules[0])
    say("plain decoding")
    plain = run_plain(target, input_ids, settings)
    points = []
    for schedule in schedules:
        say(f"k = {schedule.k}")
        spec = run_speculative(target, input_ids, source, settings, schedule)
        stats = spec.stats
        same = first_difference(plain.token_ids, spec.token_ids) is None
        points.append(SweepPoint(
            k=schedule.k, measured_speedup=_ratio(spec.decode_tokens_per_s, plain.decode_tokens_per_s),
            predicted_speedup=stats.predicted_speedup, acceptance_rate=stats.acceptance_rate,
            tokens_per_target_forward=stats.tokens_per_target_forward, cost_ratio=stats.cost_ratio,
            identical=same if settings.greedy else None))
    return tuple(points)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0
