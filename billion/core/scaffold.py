"""A chat scaffold for base models: a plain "User:/Assistant:" transcript with two example turns.

A base model (Gemma-3-270M, Pythia) has no chat template; given only "User: ...\nAssistant:" it
often echoes the prompt or writes the whole transcript on. Two short example exchanges show it the
turn shape, and generation stops where it starts the next "User:" turn (or a second "Assistant:").
Training keeps the bare fallback template (billion.core.registry.FALLBACK_TEMPLATE): the examples
are for chatting only.
"""

from __future__ import annotations

from collections.abc import Sequence

from billion.core.registry import FALLBACK_STOPS

Message = dict

#: the header when the conversation brings no system turn of its own
INTRO = "A conversation between a User and a helpful Assistant. The Assistant answers briefly."
#: the example turns every base-model chat starts with
EXAMPLES: tuple[Message, ...] = (
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
    {"role": "user", "content": "How many legs does a spider have?"},
    {"role": "assistant", "content": "A spider has eight legs."},
)
#: where a base model's answer ends: it starts the user's next turn, or answers twice
SCAFFOLD_STOPS: tuple[str, ...] = (*FALLBACK_STOPS, "\nAssistant:")


def scaffold_messages(messages: Sequence[Message]) -> list[Message]:
    """The conversation behind a header (its own system turn, else INTRO) and the example turns."""
    system = [m for m in messages if m.get("role") == "system"]
    header = "\n\n".join(str(m.get("content", "")) for m in system) or INTRO
    rest = [m for m in messages if m.get("role") != "system"]
    return [{"role": "system", "content": header}, *EXAMPLES, *rest]
