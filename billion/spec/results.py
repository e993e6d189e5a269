"""What speculative decoding returns: its rounds, each token's provenance, and summary statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from billion.spec.cost import expected_tokens_per_round, predicted_speedup

#: accepted: a draft token the target agreed with; correction: the target's token where it disagreed;
#: bonus: the target's own next token after every drafted token was accepted (or none was drafted)
TokenKind = Literal["accepted", "correction", "bonus"]


@dataclass(frozen=True)
class Round:
    """One draft-and-verify round."""

    index: int
    drafted: tuple[int, ...]
    accepted: int
    #: tokens this round added to the output: accepted drafts, then a correction or a bonus
    emitted: tuple[int, ...]
    kinds: tuple[TokenKind, ...]
    draft_s: float
    target_s: float
    #: seconds since the call when this round's tokens were ready
    time_s: float

    @property
    def rejected(self) -> tuple[int, ...]:
        return self.drafted[self.accepted:]


@dataclass(frozen=True)
class EmittedToken:
    id: int
    #: the text this token added (may be "" while a UTF-8 character is incomplete)
    text: str
    kind: TokenKind
    round: int
    time_s: float


@dataclass(frozen=True)
class SpeculativeStats:
    rounds: int
    drafted: int
    accepted: int
    #: accepted / drafted
    acceptance_rate: float
    #: per-token acceptance probability of Leviathan's model, estimated as accepted / (accepted +
    #: rejections): tokens after a rejection were never judged, so they do not count
    alpha: float
    #: mean drafted tokens per round (gamma in the paper)
    mean_k: float
    tokens_per_target_forward: float
    draft_s: float
    target_s: float
    #: time of one draft token over time of one target forward (c in the paper)
    cost_ratio: float
    #: (1 - alpha^(k+1)) / (1 - alpha)
    expected_tokens_per_round: float
    #: expected tokens per round / (k c + 1)
    predicted_speedup: float


@dataclass(frozen=True)
class SpeculativeResult:
    draft: str
    text: str
    #: output ids, EOS excluded (as in billion.core.generation)
    token_ids: tuple[int, ...]
    tokens: tuple[EmittedToken, ...]
    rounds: tuple[Round, ...]
    prompt_tokens: int
    prefill_s: float
    ttft_s: float
    #: tokens after the first round per second after it (same definition as plain generation)
    decode_tokens_per_s: float
    total_s: float
    #: "eos", "stop" (a stop string), "length" or "cancelled"
    finish_reason: str
    stats: SpeculativeStats

    @property
    def token_times(self) -> tuple[float, ...]:
        """Seconds since the call at which each token was ready (for replay at true pace)."""
        return tuple(t.time_s for t in self.tokens)


@dataclass(frozen=True)
class SpeculativeUpdate:
    #: all text so far (stop strings removed)
    text: str
    #: what this round added; a stop string found later may cut text already shown, so trust `text`
    new_text: str
    n_tokens: int
    round: Round | None
    #: set on the last update only
    result: SpeculativeResult | None = None


def token_kinds(drafted: int, accepted: int, emitted: int) -> tuple[TokenKind, ...]:
    last: TokenKind = "correction" if accepted < drafted else "bonus"
    return tuple("accepted" for _ in range(emitted - 1)) + (last,)


def summarize(rounds: Sequence[Round], n_tokens: int) -> SpeculativeStats:
    drafted = sum(len(r.drafted) for r in rounds)
    accepted = sum(r.accepted for r in rounds)
    rejections = sum(1 for r in rounds if r.accepted < len(r.drafted))
    draft_s = sum(r.draft_s for r in rounds)
    target_s = sum(r.target_s for r in rounds)
    n_rounds = len(rounds)
    alpha = accepted / (accepted + rejections) if accepted + rejections else 0.0
    mean_k = drafted / n_rounds if n_rounds else 0.0
    cost_ratio = (draft_s / drafted) / (target_s / n_rounds) if drafted and target_s > 0 else 0.0
    return SpeculativeStats(
        rounds=n_rounds, drafted=drafted, accepted=accepted,
        acceptance_rate=accepted / drafted if drafted else 0.0, alpha=alpha, mean_k=mean_k,
        tokens_per_target_forward=n_tokens / n_rounds if n_rounds else 0.0,
        draft_s=draft_s, target_s=target_s, cost_ratio=cost_ratio,
        expected_tokens_per_round=expected_tokens_per_round(alpha, mean_k),
        predicted_speedup=predicted_speedup(alpha, mean_k, cost_ratio))
