"""What the Arena page shows of a battle: answers under public labels, its status, the reveal after
the vote (never a name before), and the example prompts."""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict
from typing import Any

import gradio as gr

from billion.arena.battle import Battle, Reveal, conversation, reveal
from billion.core.paths import ASSETS
from billion.ui.downloads import weight_sizes

PROMPTS_FILE = ASSETS / "arena_prompts.txt"


# What the page shows of a battle: (chat A, chat B, battle token, status, reveal).
View = tuple[list[dict[str, str]], list[dict[str, str]], str, str, str]


def example_prompts() -> list[str]:
    lines = PROMPTS_FILE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def random_prompt() -> str:
    return random.choice(example_prompts())


def anonymous_session(request: gr.Request | None) -> str:
    """A stable id per browser session that cannot be used to join it (hashed session hash)."""
    raw = getattr(request, "session_hash", None) if request is not None else None
    return hashlib.sha256(raw.encode()).hexdigest()[:16] if raw else "anonymous"


def status_text(battle: Battle) -> str:
    if battle.status == "answering":
        if battle.live_streaming:
            return "Both models are answering…"
        return "Both models are answering; both answers appear together when both are done."
    if battle.status == "ready":
        return "Both answers are in: vote below, ask a follow-up, or regenerate."
    if battle.status == "voted":
        return "Vote recorded. Type a prompt or press **New round** for the next battle."
    return "Ask a prompt to start."


def battle_view(battle: Battle, status: str | None = None) -> View:
    """The page's part of a battle: answers under public labels, token, status; never a name."""
    shown_reveal = reveal_markdown(reveal(battle), weight_sizes(battle)) if battle.status == "voted" else ""
    return (conversation(battle, "left"), conversation(battle, "right"), battle.id,
            status or status_text(battle), shown_reveal)


def reveal_markdown(shown: Reveal, sizes: tuple[str, str] | None = None) -> str:
    rows = [("model", shown.left.display_name, shown.right.display_name),
            ("contestant", f"`{shown.left.name}`", f"`{shown.right.name}`"),
            ("size", shown.left.size, shown.right.size),
            ("precision", shown.left.dtype, shown.right.dtype),
            ("tokens/s", f"{shown.left.tokens_per_s:.1f}", f"{shown.right.tokens_per_s:.1f}")]
    if sizes:
        rows.append(("weights", *sizes))
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    outcome = {"tie": "a tie", "both bad": "both bad"}.get(shown.outcome, f"**{shown.outcome}** wins")
    text = (f"### Revealed\n| | {shown.left.label} | {shown.right.label} |\n|---|---|---|\n{table}\n\n"
            f"Your vote: {outcome}.")
    if shown.flag_reason:
        text += f"\n\n⚠️ **Not counted in the ratings.** {shown.flag_reason}"
    return text


def reveal_record(battle: Battle) -> dict[str, Any]:
    return {"battle": battle.id, **asdict(reveal(battle))}
