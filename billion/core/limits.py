"""Limits on what a person may ask of billion: the one place they are set and checked.

A new limit is a field of `Limits` (with a comment saying why that size), set once in the app's
settings (billion.core.settings; env BILLION_LIMIT_<FIELD NAME>, e.g. BILLION_LIMIT_MAX_NEW_TOKENS)
and read by the UI and the CLI from there. The defaults are sized for the smallest place billion
runs in public, a free Space (2 vCPU, 16 GB): every check runs before the expensive step it guards
(tokenising, decoding an upload, loading a model), so a refused request costs next to nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

from billion.core.errors import BillionError


@dataclass(frozen=True)
class Limits:
    """Sizes of input the app accepts; the engine checks them, the UI also caps its text boxes."""

    #: characters of one chat prompt
    chat_prompt_chars: int = 8000
    #: characters of one arena prompt: a voter reads two answers to it, so it stays short
    arena_prompt_chars: int = 4000
    #: characters of one race prompt: grounded prompts quote a passage; the model's context, in
    #: tokens, is the real limit and the engine checks it
    race_prompt_chars: int = 32000
    #: characters of a system message (a 16 MB one took 14.7 s and 1.1 GB to tokenise before)
    system_chars: int = 4000
    #: characters of one model's earlier chat turns together: ~12k tokens, above the context of
    #: most models here, so a longer history could never be answered anyway
    history_chars: int = 48000
    #: earlier messages (user and assistant) of one chat
    history_messages: int = 100
    #: new tokens one answer may ask for (chat, arena, race): ~2 minutes of a 1B model on 2 vCPUs
    max_new_tokens: int = 1024
    #: the Arena samples at least this hot, with a secret seed per battle, so that a greedy Chat
    #: call cannot reproduce an anonymous answer (docs/arena.md measures how often it still does)
    arena_min_temperature: float = 0.5
    #: bytes of an uploaded file as sent (compressed); also the web server's max_file_size
    upload_bytes: int = 50 * 2**20
    #: bytes of text an upload may decode to (Parquet values, a .gz or .zip member): a 14 KB
    #: Parquet file of one repeated string decoded to 916 MB before this existed
    upload_decoded_bytes: int = 128 * 2**20
    #: rows of one uploaded dataset (a LoRA run on a CPU Space sees a few thousand at most)
    upload_rows: int = 100_000
    #: characters of an arena contestant's label (it is shown in every rating table and plot)
    label_chars: int = 40

    # ---- training runs (billion.train.budget checks them before a run starts) ----
    #: optimizer steps of one run (max_steps, or what epochs come to): 10**9 would never end
    train_max_steps: int = 2000
    #: seconds one run may train; it then stops at the next step and keeps its adapter
    train_max_seconds: float = 3600.0
    #: share of the memory free at the start that a run may take: its estimate is checked against
    #: it before the run starts, and its process is stopped past it, so the app keeps answering
    train_memory_share: float = 0.6
    #: and at most this many GB whatever is free (0: no fixed cap), for a machine shared with others
    train_memory_gb: float = 0.0
    #: runs training at once for one person (browser or Hugging Face login), and in all
    train_runs_per_client: int = 1
    train_runs_total: int = 2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Limits:
        """The defaults, with each BILLION_LIMIT_<FIELD> found in the environment applied."""
        environ = os.environ if environ is None else environ
        changes = {}
        for f in fields(cls):
            raw = environ.get(f"BILLION_LIMIT_{f.name.upper()}")
            if raw is None or not raw.strip():
                continue
            kind = type(getattr(cls(), f.name))
            try:
                value = kind(float(raw)) if kind is int else kind(raw)
            except ValueError:
                raise BillionError(f"BILLION_LIMIT_{f.name.upper()}={raw!r} is not a number.") from None
            if not value > 0 and f.name not in ("arena_min_temperature", "train_memory_gb"):
                raise BillionError(f"BILLION_LIMIT_{f.name.upper()} must be positive (got {raw}).")
            changes[f.name] = value
        return replace(cls(), **changes)


DEFAULT_LIMITS = Limits()


def check_prompt(prompt: str | None, max_chars: int, where: str = "a prompt",
                 empty_hint: str = "type a question") -> str:
    """The prompt without surrounding whitespace; a BillionError when it is empty or too long."""
    if prompt is not None and not isinstance(prompt, str):
        raise BillionError(f"The prompt must be text (got {type(prompt).__name__}).")
    text = (prompt or "").strip()
    if not text:
        raise BillionError(f"The prompt is empty: {empty_hint}.")
    if len(text) > max_chars:
        raise BillionError(f"The prompt has {len(text)} characters; {where} takes at most "
                           f"{max_chars}: shorten it.")
    return text


def check_system(system: str | None, limits: Limits = DEFAULT_LIMITS) -> str:
    """A system message within limits.system_chars ("" when there is none)."""
    if system is not None and not isinstance(system, str):
        raise BillionError(f"The system message must be text (got {type(system).__name__}).")
    if system and len(system) > limits.system_chars:
        raise BillionError(f"The system message has {len(system)} characters; it may have at most "
                           f"{limits.system_chars}: shorten it.")
    return system or ""


def check_history(history: Sequence[Mapping], limits: Limits = DEFAULT_LIMITS) -> None:
    """Earlier turns of one chat within limits.history_messages and limits.history_chars."""
    if len(history) > limits.history_messages:
        raise BillionError(f"The conversation has {len(history)} earlier messages; a chat keeps at "
                           f"most {limits.history_messages}: press Clear to start a new one.")
    total = 0
    for message in history:
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, str):
            raise BillionError("Each earlier message needs a role and text content.")
        total += len(content)
        if total > limits.history_chars:
            raise BillionError(f"The conversation so far is over {limits.history_chars} characters: "
                               "press Clear to start a new one.")


def check_max_new_tokens(value: int, limits: Limits = DEFAULT_LIMITS) -> int:
    if value > limits.max_new_tokens:
        raise BillionError(f"max_new_tokens={value} is above this app's limit of "
                           f"{limits.max_new_tokens}: lower it.")
    return value


# Letters and digits of any script, spaces and a few separators; nothing that renders as markup.
_LABEL = re.compile(r"[\w .,\-+=()]+")


def check_label(label: str | None, limits: Limits = DEFAULT_LIMITS) -> str:
    """A contestant label, trimmed: at most limits.label_chars of letters, digits, spaces, . , - _ + = ( )."""
    if label is not None and not isinstance(label, str):
        raise BillionError(f"The label must be text (got {type(label).__name__}).")
    text = (label or "").strip()
    if len(text) > limits.label_chars:
        raise BillionError(f"The label has {len(text)} characters; a label may have at most "
                           f"{limits.label_chars}: shorten it.")
    if text and not _LABEL.fullmatch(text):
        bad = sorted({c for c in text if not _LABEL.fullmatch(c)})
        raise BillionError(f"The label may hold letters, digits, spaces and . , - _ + = ( ) only "
                           f"(found {' '.join(repr(c) for c in bad[:5])}): rename it.")
    return text
