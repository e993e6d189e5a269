"""Quantized self-speculation: the target's own weights at int8 or int4 draft for the target itself.

One set of weights on disk, two precisions in memory. The draft is the same network, so it agrees
with the target far more often than any smaller model. It drafts on the target's own KV cache:
the committed prefix was computed by the target at full precision, so only the few drafted
positions carry quantization error (and no second cache, no second prefill). Before the target
verifies, the draft's entries are cropped away and the verify forward recomputes them exactly.
"""

from __future__ import annotations

import math
import threading
import time
import weakref

import torch
from transformers import DynamicCache

from billion.core.errors import BillionError
from billion.core.sampling import SamplingSettings, penalize_repeats, probabilities, sample
from billion.spec.cost import VerifyCost, expected_tokens
from billion.spec.source import Draft, fit_vocab, forward_logits

SCHEMES = ("int8", "int4")
_COPIES: "weakref.WeakKeyDictionary[torch.nn.Module, dict[str, torch.nn.Module]]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def quantized_copy(model: torch.nn.Module, scheme: str, tokenizer=None, group: int | None = None) -> torch.nn.Module:
    """The model quantized to `scheme` (made once per model and scheme, then kept while it lives);
    with a tokenizer, int8's smoothing is calibrated on real text rather than random ids. group:
    the group (the registry's quant_group for the model; None: the kernels' default)."""
    if scheme not in SCHEMES:
        raise BillionError(f"Unknown quantized draft 'quant:{scheme}': use quant:int8 or quant:int4.")
    try:
        from billion.core.quant import calibration_ids, quantize_model
    except ImportError as exc:
        raise BillionError(f"quant:{scheme} needs billion's CPU int8/int4 kernels (billion.core.quant), "
                           f"which this install lacks ({exc}): use prompt-lookup or a draft model.") from exc
    with _LOCK:
        copies = _COPIES.setdefault(model, {})
        key = f"{scheme}-g{group}" if group else scheme
        if key not in copies:
            calibration = calibration_ids(tokenizer) if tokenizer is not None else None
            copies[key] = quantize_model(model, scheme, calibration=calibration, group_size=group)
        return copies[key]


class ConfidenceCalibration:
    """How often the target accepts a drafted token, by the draft's own confidence in it.

    A quantized copy is far more often right than its softmax says (the target is the same
    network), so its confidence is read through what the target actually accepted so far.
    """

    EDGES = (0.2, 0.4, 0.6, 0.8, 0.9, 0.97)

    def __init__(self, prior: float = 0.8, weight: float = 2.0):
        self.prior, self.weight = prior, weight
        self.reached = [0] * (len(self.EDGES) + 1)
        self.accepted = [0] * (len(self.EDGES) + 1)

    def bucket(self, confidence: float) -> int:
        return sum(confidence >= edge for edge in self.EDGES)

    def chance(self, confidence: float) -> float:
        b = self.bucket(confidence)
        return (self.accepted[b] + self.prior * self.weight) / (self.reached[b] + self.weight)

    def record(self, confidences: list[float], accepted: int) -> None:
        for i, confidence in enumerate(confidences[:accepted + 1]):  # later ones were never judged
            b = self.bucket(confidence)
            self.reached[b] += 1
            self.accepted[b] += i < accepted


class SharedCacheDraft:
    """A copy of the target (e.g. quantized) that drafts on the target's KV cache.

    Each round it reads the last committed token, drafts token by token while the chance that all
    its tokens are accepted (its confidence, calibrated on what the target accepted so far) still
    pays for the time they cost, then crops its entries away.
    """

    def __init__(self, model, vocab_size: int, name: str, min_chance: float = 0.0):
        self.model = model
        self.vocab_size = vocab_size
        self.name = name
        self.device = next(model.parameters()).device
        self.cache: DynamicCache | None = None
        #: stop drafting once the estimated chance that every drafted token is accepted falls below
        #: this, whatever the cost model says
        self.min_chance = min_chance
        self.cost = VerifyCost()
        self.calibration = ConfidenceCalibration()
        self._step_s: list[float] = []
        self._confidences: list[float] = []  # of the last proposal's tokens

    def start(self, prompt_ids: list[int]) -> None:
        self.cache = None

    def attach(self, cache: DynamicCache) -> None:
        """The target's cache, holding every committed token but the last at each round's start."""
        self.cache = cache

    def _step(self, token: int) -> torch.Tensor:
        started = time.perf_counter()
        logits = forward_logits(self.model, [token], self.cache, self.device)[-1].float().cpu()
        self._step_s.append(time.perf_counter() - started)
        del self._step_s[:-32]
        return fit_vocab(logits, self.vocab_size)

    def step_cost(self) -> float:
        """One draft step in target 1-token steps, as measured so far (0.5 before any measurement)."""
        one = self.cost.one_step_s()
        if not self._step_s or one is None:
            return 0.5
        return sorted(self._step_s)[len(self._step_s) // 2] / one

    def keep_drafting(self, chances: list[float]) -> bool:
        """Whether drafting one more token after these raises the expected tokens per unit of time.

        chances: calibrated acceptance chances of the tokens drafted so far. The next token's is
        unknown until it is drafted; the last one's stands in for it.
        """
        m, c = len(chances), self.step_cost()
        reach = math.prod(chances)
        if reach < self.min_chance:
            return False
        total = expected_tokens(chances)[-1]
        now = total / (self.cost.ratio(m + 1) + m * c)
        more = (total + reach * chances[-1]) / (self.cost.ratio(m + 2) + (m + 1) * c)
        return more >= now

    def propose(self, context: list[int], k: int, settings: SamplingSettings,
                generator: torch.Generator | None) -> Draft:
        if self.cache is None:
            raise BillionError(f"The {self.name} draft drafts on the target's cache: run it through "
                               "speculative decoding, which attaches that cache.")
        tokens: list[int] = []
        rows: list[torch.Tensor] = []
        chances: list[float] = []
        self._confidences = []
        seen = torch.tensor(context) if settings.repetition_penalty != 1.0 else None
        logits, fed = self._step(context[-1]), 1
        while len(tokens) < k:
            if seen is not None:
                logits = penalize_repeats(logits, torch.cat([seen, torch.tensor(tokens, dtype=torch.long)]),
                                          settings.repetition_penalty)
            if settings.greedy:
                token = int(logits.argmax(-1))
            else:
                rows.append(probabilities(logits, settings))
                token = int(sample(rows[-1], generator))
            tokens.append(token)
            self._confidences.append(float(torch.softmax(logits, -1)[token]))
            chances.append(self.calibration.chance(self._confidences[-1]))
            if len(tokens) == k or not self.keep_drafting(chances):
                break
            logits, fed = self._step(token), fed + 1
        self.cache.crop(-fed)
        return Draft(tuple(tokens), torch.stack(rows) if rows else None)

    def observe(self, drafted: int, accepted: int, target_s: float) -> None:
        self.cost.observe(drafted + 1, target_s)
        self.calibration.record(self._confidences[:drafted], accepted)

    def rollback(self, valid: int) -> None:
        pass
