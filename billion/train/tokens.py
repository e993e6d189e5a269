"""Chat messages -> token ids and labels, with loss only on the answers; previews of what is trained.

Each conversation is rendered with the model's own chat template (the registry's fallback for base
models). The answer of assistant turn i is the text that rendering messages[:i + 1] adds to
rendering messages[:i] with the generation prompt: so the system and user turns and the assistant
header are masked (label -100), and the answer with its end-of-turn marker is trained, exactly as
the model will see it when it chats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from billion.core.errors import BillionError
from billion.core.registry import FALLBACK_TEMPLATE
from billion.train.data import Example, RowProblem

IGNORE = -100  # the label value PyTorch's cross-entropy skips


@dataclass(frozen=True)
class Span:
    """A piece of rendered text and whether its tokens are trained (for highlighting)."""

    text: str
    trained: bool


@dataclass(frozen=True)
class TokenizedExample:
    row: int
    input_ids: tuple[int, ...]
    #: the token id where it is trained, -100 where it is not
    labels: tuple[int, ...]
    #: tokens before the cutoff was applied
    full_length: int

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.input_ids)

    @property
    def trained_tokens(self) -> int:
        """Tokens the loss predicts (the first token has nothing before it to predict it from)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE)


@dataclass(frozen=True)
class TokenizedDataset:
    examples: tuple[TokenizedExample, ...]
    cutoff: int
    #: rows that could not be tokenized or lost their whole answer to the cutoff
    problems: tuple[RowProblem, ...]
    warnings: tuple[str, ...]

    @property
    def lengths(self) -> tuple[int, ...]:
        """Token lengths before the cutoff, for a histogram against it."""
        return tuple(e.full_length for e in self.examples)

    @property
    def tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)


@dataclass(frozen=True)
class ExamplePreview:
    row: int
    #: the kept text, split where training switches on or off
    spans: tuple[Span, ...]
    tokens: int
    trained_tokens: int
    #: text after the cutoff, dropped from training
    cut_text: str


@dataclass(frozen=True)
class Histogram:
    edges: tuple[int, ...]
    counts: tuple[int, ...]
    cutoff: int
    #: examples longer than the cutoff (truncated)
    over_cutoff: int


def chat_template(tokenizer, use_fallback: bool = False) -> str:
    """The template to train with: the tokenizer's own, else the registry's fallback."""
    own = getattr(tokenizer, "chat_template", None)
    if use_fallback or not isinstance(own, str) or not own:
        return FALLBACK_TEMPLATE
    return own


def render(tokenizer, template: str, messages: Sequence[dict], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(list(messages), chat_template=template, tokenize=False,
                                         add_generation_prompt=generation_prompt)


def segments(tokenizer, template: str, example: Example) -> list[Span]:
    """The whole rendered conversation as alternating untrained / trained spans."""
    if example.raw_text:
        eos = tokenizer.eos_token or ""
        return [Span(example.messages[0]["content"] + eos, True)]
    messages = list(example.messages)
    answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    spans = answer_spans(tokenizer, template, messages, answers)
    if spans is None:
        # Some templates rewrite earlier turns (e.g. drop past reasoning): train the last answer only.
        spans = answer_spans(tokenizer, template, messages, answers[-1:])
    if spans is None:
        raise BillionError("the chat template renders a conversation differently from its prefix, "
                           "so the answer cannot be located")
    if template == FALLBACK_TEMPLATE and tokenizer.eos_token:
        # A base model learns to stop only if its answers end with EOS.
        spans.append(Span(tokenizer.eos_token, True))
    return [s for s in spans if s.text]


def answer_spans(tokenizer, template: str, messages: list[dict],
                 answers: list[int]) -> list[Span] | None:
    """Spans with the given assistant turns trained, or None when rendering is not prefix-stable."""
    spans: list[Span] = []
    done = ""
    for index in answers:
        prompt = render(tokenizer, template, messages[:index], generation_prompt=True)
        full = render(tokenizer, template, messages[:index + 1], generation_prompt=False)
        if not (prompt.startswith(done) and full.startswith(prompt)):
            return None
        spans += [Span(prompt[len(done):], False), Span(full[len(prompt):], True)]
        done = full
    return spans


def tokenize_spans(tokenizer, spans: Sequence[Span]) -> tuple[list[int], list[bool]]:
    """Token ids of the joined text, and for each token whether it starts inside a trained span.

    The text is tokenized whole (as at inference), and offsets map each token back to its span.
    """
    text = "".join(s.text for s in spans)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    trained_ranges, position = [], 0
    for span in spans:
        if span.trained:
            trained_ranges.append((position, position + len(span.text)))
        position += len(span.text)
    trained = [any(a <= start < b for a, b in trained_ranges) for start, _ in encoded["offset_mapping"]]
    return list(encoded["input_ids"]), trained


def tokenize_example(tokenizer, template: str, example: Example, cutoff: int) -> TokenizedExample:
    ids, trained = tokenize_spans(tokenizer, segments(tokenizer, template, example))
    labels = [token if keep else IGNORE for token, keep in zip(ids, trained)]
    return TokenizedExample(row=example.row, input_ids=tuple(ids[:cutoff]), labels=tuple(labels[:cutoff]),
                            full_length=len(ids))


def tokenize_dataset(tokenizer, examples: Sequence[Example], cutoff: int,
                     use_fallback: bool = False) -> TokenizedDataset:
    """Tokenize every example; rows whose answer lies wholly past the cutoff are skipped."""
    if cutoff < 8:
        raise BillionError(f"cutoff length {cutoff} is too short: use at least 8 tokens (256 is typical).")
    template = chat_template(tokenizer, use_fallback)
    kept: list[TokenizedExample] = []
    problems: list[RowProblem] = []
    truncated: list[int] = []
    for example in examples:
        try:
            item = tokenize_example(tokenizer, template, example, cutoff)
        except BillionError as exc:
            problems.append(RowProblem(example.row, str(exc)))
            continue
        except Exception as exc:  # a template may raise on a conversation it does not support
            problems.append(RowProblem(example.row, f"the chat template rejected it ({exc})"))
            continue
        if item.trained_tokens == 0:
            problems.append(RowProblem(example.row, f"its answer starts after the cutoff of {cutoff} "
                                                    "tokens: raise the cutoff or shorten the prompt"))
            continue
        if item.truncated:
            truncated.append(item.row)
        kept.append(item)
    warnings = []
    if truncated:
        rows = ", ".join(map(str, truncated[:10])) + (" ..." if len(truncated) > 10 else "")
        warnings.append(f"{len(truncated)} row(s) are longer than the cutoff of {cutoff} tokens and are "
                        f"truncated (rows {rows}): raise the cutoff to keep their endings")
    return TokenizedDataset(tuple(kept), cutoff, tuple(problems), tuple(warnings))


def pad_batch(features: Sequence[dict], pad_id: int) -> dict:
    """Right-pad a batch: pad tokens get attention 0 and label -100, so they are never trained."""
    import torch

    width = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, feature in enumerate(features):
        n = len(feature["input_ids"])
        ids[row, :n] = torch.tensor(feature["input_ids"])
        labels[row, :n] = torch.tensor(feature["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# ---- preview ------------------------------------------------------------------------------------

def preview_example(tokenizer, template: str, example: Example, cutoff: int) -> ExamplePreview:
    """The rendered text, split where the trained flag of its tokens changes."""
    ids, trained = tokenize_spans(tokenizer, segments(tokenizer, template, example))
    kept_ids, kept_flags = ids[:cutoff], trained[:cutoff]
    spans: list[Span] = []
    start = 0
    for index in range(1, len(kept_ids) + 1):
        if index == len(kept_ids) or kept_flags[index] != kept_flags[start]:
            spans.append(Span(tokenizer.decode(kept_ids[start:index]), kept_flags[start]))
            start = index
    cut = tokenizer.decode(ids[cutoff:]) if len(ids) > cutoff else ""
    return ExamplePreview(row=example.row, spans=tuple(spans), tokens=len(kept_ids),
                          trained_tokens=sum(kept_flags), cut_text=cut)


def preview(tokenizer, examples: Sequence[Example], cutoff: int, count: int = 3,
            use_fallback: bool = False) -> tuple[ExamplePreview, ...]:
    template = chat_template(tokenizer, use_fallback)
    return tuple(preview_example(tokenizer, template, e, cutoff) for e in examples[:count])


def length_histogram(lengths: Sequence[int], cutoff: int, bins: int = 20) -> Histogram:
    """Token-length counts in equal bins from 0 to past the longest example (or the cutoff)."""
    top = max([cutoff, *lengths]) + 1
    width = max(1, -(-top // bins))
    edges = tuple(range(0, width * bins + 1, width))
    counts = [0] * bins
    for length in lengths:
        counts[min(length // width, bins - 1)] += 1
    return Histogram(edges=edges, counts=tuple(counts), cutoff=cutoff,
                     over_cutoff=sum(1 for n in lengths if n > cutoff))


@dataclass(frozen=True)
class DatasetPreview:
    """What the UI shows before training: a few highlighted examples and the length histogram."""

    examples: tuple[ExamplePreview, ...]
    histogram: Histogram
    #: rows dropped at tokenization (template rejected them, or the cutoff cut their whole answer)
    problems: tuple[RowProblem, ...]
    #: e.g. how many rows the cutoff truncates
    warnings: tuple[str, ...]


def preview_dataset(tokenizer, examples: Sequence[Example], cutoff: int, count: int = 3,
                    use_fallback: bool = False) -> DatasetPreview:
    """Tokenize every row (for lengths and truncation) and render the first `count` for highlighting."""
    data = tokenize_dataset(tokenizer, examples, cutoff, use_fallback)
    return DatasetPreview(examples=preview(tokenizer, examples, cutoff, count, use_fallback),
                          histogram=length_histogram(data.lengths, cutoff), problems=data.problems,
                          warnings=data.warnings)
