"""Training data formats: the row types, which format a row is in (from its field names), and each
row normalised to chat messages or a RowProblem saying what to fix. billion.train.data reads files."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from billion.core.errors import BillionError

Format = Literal["alpaca", "messages", "sharegpt", "prompt_completion", "text"]
Message = dict  # {"role": "system" | "user" | "assistant", "content": str}

FORMAT_FIELDS: dict[str, str] = {
    "alpaca": "instruction + output (optional input, system)",
    "messages": "messages (a list of role/content)",
    "sharegpt": "conversations (a list of from/value)",
    "prompt_completion": "prompt + completion",
    "text": "text",
}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}


@dataclass(frozen=True)
class RowProblem:
    """Why one row cannot be used."""

    row: int
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


@dataclass(frozen=True)
class Example:
    """One usable row as chat messages; a `text` row is a single assistant message."""

    row: int
    messages: tuple[Message, ...]
    #: True for the `text` format: trained as raw text, without a chat template
    raw_text: bool = False


Record = tuple[int, Any]  # (row number, parsed value)


def record_format(value: Any) -> Format | None:
    """The format a record's field names say it is in, or None."""
    if not isinstance(value, dict):
        return None
    keys = set(value)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    # One signature field is enough, so a row missing its partner is reported as missing it.
    if keys & {"instruction", "output"}:
        return "alpaca"
    if keys & {"prompt", "completion"}:
        return "prompt_completion"
    if "text" in keys:
        return "text"
    return None


def detect_format(records: list[Record]) -> tuple[Format, Counter]:
    """The format of most rows; raises when no row is in a known format."""
    counts: Counter = Counter(record_format(value) for _, value in records)
    known = [(n, k) for k, n in counts.items() if k is not None]
    if not known:
        first = records[0][1] if records else None
        expected = "; ".join(f"{k}: {v}" for k, v in FORMAT_FIELDS.items())
        found = unknown_fields_message(first) if records else "no rows"
        raise BillionError(f"No row is in a known format ({found}). Expected fields, one format per "
                           f"file: {expected}.")
    return max(known)[1], counts


def unknown_fields_message(value: Any) -> str:
    if not isinstance(value, dict):
        return f"is a {type(value).__name__}, not an object with fields"
    found = ", ".join(f"`{k}`" for k in list(value)[:8]) or "none"
    return f"has no known fields (found {found}); expected instruction/output, messages, " \
           "conversations, prompt/completion or text"


def text_field(value: dict, name: str, required: bool = True) -> str | RowProblem:
    """A field as text; numbers become text, other types and blank required fields are problems."""
    if name not in value:
        return RowProblem(0, f"field `{name}` is missing") if required else ""
    item = value[name]
    if item is None or (isinstance(item, float) and item != item):  # NaN: an empty parquet cell
        item = ""
    if isinstance(item, bool) or not isinstance(item, (str, int, float)):
        return RowProblem(0, f"field `{name}` is not text (got {type(item).__name__})")
    item = str(item)
    if required and not item.strip():
        return RowProblem(0, f"field `{name}` is empty")
    return item


def normalise(row: int, fmt: Format, value: dict) -> Example | RowProblem:
    """One record -> chat messages, or the reason it cannot be used (with its row number)."""
    builders = {"alpaca": alpaca_messages, "messages": chat_messages, "sharegpt": sharegpt_messages,
                "prompt_completion": prompt_completion_messages, "text": text_messages}
    result = builders[fmt](value)
    if isinstance(result, RowProblem):
        return RowProblem(row, result.message)
    return Example(row=row, messages=tuple(result), raw_text=fmt == "text")


def _fields(value: dict, *specs: tuple[str, bool]) -> list[str] | RowProblem:
    out = []
    for name, required in specs:
        item = text_field(value, name, required)
        if isinstance(item, RowProblem):
            return item
        out.append(item)
    return out


def alpaca_messages(value: dict) -> list[Message] | RowProblem:
    fields = _fields(value, ("instruction", True), ("output", True), ("input", False), ("system", False))
    if isinstance(fields, RowProblem):
        return fields
    instruction, output, extra, system = fields
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    head = [{"role": "system", "content": system}] if system.strip() else []
    return [*head, {"role": "user", "content": user}, {"role": "assistant", "content": output}]


def prompt_completion_messages(value: dict) -> list[Message] | RowProblem:
    fields = _fields(value, ("prompt", True), ("completion", True))
    if isinstance(fields, RowProblem):
        return fields
    return [{"role": "user", "content": fields[0]}, {"role": "assistant", "content": fields[1]}]


def text_messages(value: dict) -> list[Message] | RowProblem:
    fields = _fields(value, ("text", True))
    if isinstance(fields, RowProblem):
        return fields
    return [{"role": "assistant", "content": fields[0]}]


def chat_messages(value: dict) -> list[Message] | RowProblem:
    return turns(value.get("messages"), "messages", "role", "content", {"system": "system", "user": "user",
                                                                       "assistant": "assistant"})


def sharegpt_messages(value: dict) -> list[Message] | RowProblem:
    return turns(value.get("conversations"), "conversations", "from", "value", SHAREGPT_ROLES)


def turns(items: Any, field: str, role_key: str, content_key: str,
          roles: dict[str, str]) -> list[Message] | RowProblem:
    """A list of turns -> messages ending with the last assistant turn (later turns are not trained)."""
    if not isinstance(items, list) or not items:
        return RowProblem(0, f"field `{field}` must be a non-empty list of turns")
    messages: list[Message] = []
    for index, turn in enumerate(items, start=1):
        if not isinstance(turn, dict):
            return RowProblem(0, f"`{field}` turn {index} is not an object with {role_key}/{content_key}")
        role = roles.get(str(turn.get(role_key, "")).strip().lower())
        if role is None:
            return RowProblem(0, f"`{field}` turn {index} has unknown {role_key} {turn.get(role_key)!r}; "
                                 f"use one of {', '.join(sorted(set(roles)))}")
        content = turn.get(content_key)
        if not isinstance(content, str) or not content.strip():
            return RowProblem(0, f"`{field}` turn {index} ({role}) has an empty `{content_key}`")
        if role == "system" and messages:
            return RowProblem(0, f"`{field}` turn {index}: a system turn may only come first")
        messages.append({"role": role, "content": content})
    answered = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not answered:
        return RowProblem(0, f"`{field}` has no assistant turn to learn from")
    if not any(m["role"] == "user" for m in messages[:answered[-1]]):
        return RowProblem(0, f"`{field}` has no user turn before the assistant's answer")
    return messages[:answered[-1] + 1]
