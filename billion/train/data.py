"""Training data: read a file, detect its format, check every row, normalise rows to chat messages.

Formats (one per file, detected from the field names):
  alpaca             {"instruction", "input"?, "output", "system"?}
  messages           {"messages": [{"role", "content"}, ...]}
  sharegpt           {"conversations": [{"from", "value"}, ...]}
  prompt_completion  {"prompt", "completion"}
  text               {"text"}  (plain text: trained on every token, no chat template)

Files: .jsonl, .json (a list of objects, or an object holding one such list), .csv (a header row
naming the fields), .parquet, and .txt (plain text: one example per block separated by blank
lines, or one per line when the file has no blank line).

Row numbers are what a person finds in the file: the line number in .jsonl and .txt, the
spreadsheet row in .csv (the header is row 1), the 1-based record index in .json and .parquet.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from billion.core.errors import BillionError
from billion.core.limits import DEFAULT_LIMITS, Limits
from billion.train.readers import (DATA_SUFFIXES, check_json_size, check_rows, parquet_records,
                                   read_upload)

Format = Literal["alpaca", "messages", "sharegpt", "prompt_completion", "text"]
Message = dict  # {"role": "system" | "user" | "assistant", "content": str}

#: files above this size are refused before they are read (the default of limits.upload_bytes)
MAX_FILE_BYTES = DEFAULT_LIMITS.upload_bytes
#: what an upload may be: each data format, gzipped (name.jsonl.gz), or alone in a .zip
SUFFIXES = (*DATA_SUFFIXES, *(f"{s}.gz" for s in DATA_SUFFIXES), ".zip")
FORMAT_FIELDS: dict[str, str] = {
    "alpaca": "instruction + output (optional input, system)",
    "messages": "messages (a list of role/content)",
    "sharegpt": "conversations (a list of from/value)",
    "prompt_completion": "prompt + completion",
    "text": "text",
}
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant"}
# Cells a spreadsheet would run as formulas; we only ever read them as text.
FORMULA_PREFIXES = ("=", "+", "-", "@")
_MAX_LISTED_PROBLEMS = 5
#: a .txt example may span lines (blocks); its lines are capped at this many times the row limit
TXT_LINES_PER_ROW = 10


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


@dataclass(frozen=True)
class DatasetReport:
    """What was found in a file: its format, how many rows, which are usable and why not."""

    path: str
    format: Format
    rows: int
    usable: int
    problems: tuple[RowProblem, ...]
    warnings: tuple[str, ...]
    #: sha256 of the file's bytes, so a run records exactly which data it saw
    data_hash: str


@dataclass(frozen=True)
class TrainDataset:
    report: DatasetReport
    examples: tuple[Example, ...]


Record = tuple[int, Any]  # (row number, parsed value)


def load_dataset(path: str | Path, max_bytes: int | None = None,
                 limits: Limits = DEFAULT_LIMITS) -> TrainDataset:
    """Read, detect, validate and normalise a training file; raises when no row is usable.

    max_bytes (default limits.upload_bytes) bounds the file as uploaded; what it decodes to and
    its rows are bounded by limits too (billion.train.readers), checked before each costly step.
    """
    path = Path(path)
    name, raw = read_bytes(path, limits.upload_bytes if max_bytes is None else max_bytes, limits)
    records, problems, warnings = parse_records(Path(name), raw, limits)
    fmt, counts = detect_format(records)
    examples: list[Example] = []
    for row, value in records:
        kind = record_format(value)
        if kind is None:
            problems.append(RowProblem(row, unknown_fields_message(value)))
        elif kind != fmt:
            problems.append(RowProblem(row, f"is in {kind} format but the file is {fmt} (most rows); "
                                            "keep one format per file"))
        else:
            example = normalise(row, fmt, value)
            if isinstance(example, RowProblem):
                problems.append(example)
            else:
                examples.append(example)
    if len([k for k in counts if k is not None]) > 1:
        mix = ", ".join(f"{n} {k}" for k, n in counts.most_common() if k is not None)
        warnings.append(f"mixed formats ({mix}): only the {fmt} rows are used")
    problems.sort(key=lambda p: p.row)
    report = DatasetReport(path=str(path), format=fmt, rows=len(records) + _unparsed(problems, records),
                           usable=len(examples), problems=tuple(problems), warnings=tuple(warnings),
                           data_hash=hashlib.sha256(raw).hexdigest())
    if not examples:
        raise BillionError(f"{path.name} has no usable row: {describe_problems(report.problems)}")
    return TrainDataset(report, tuple(examples))


def describe_problems(problems: tuple[RowProblem, ...] | list[RowProblem]) -> str:
    """The first few problems, for one error message."""
    listed = "; ".join(str(p) for p in problems[:_MAX_LISTED_PROBLEMS])
    more = len(problems) - _MAX_LISTED_PROBLEMS
    return listed + (f"; and {more} more" if more > 0 else "")


def _unparsed(problems: list[RowProblem], records: list[Record]) -> int:
    """Rows that failed before they became records (malformed JSON lines) still count as rows."""
    parsed = {row for row, _ in records}
    return len({p.row for p in problems if p.row not in parsed})


# ---- reading ---------------------------------------------------------------------------------------

def read_bytes(path: Path, max_bytes: int, limits: Limits = DEFAULT_LIMITS) -> tuple[str, bytes]:
    """(data file name, its bytes), decompressed for .gz and .zip, within the limits."""
    name, raw = read_upload(path, max_bytes, limits)
    if not raw.strip():
        raise BillionError(f"{name} is empty: it needs at least one example.")
    return name, raw


def decode_text(name: str, raw: bytes) -> str:
    """UTF-8 text (a BOM is dropped); binary or other encodings get a message naming the line."""
    if b"\x00" in raw[:8192]:
        raise BillionError(f"{name} looks like a binary file, not text: save it as UTF-8 "
                           f"{Path(name).suffix or 'text'}.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise BillionError(f"{name} is not valid UTF-8 (line {line}, byte {exc.start}): re-save it "
                           "with UTF-8 encoding.") from exc


def parse_records(path: Path, raw: bytes, limits: Limits = DEFAULT_LIMITS
                  ) -> tuple[list[Record], list[RowProblem], list[str]]:
    """Records with their row numbers, rows that could not be parsed, and file-level warnings."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return parquet_records(path.name, raw, limits), [], []
    if suffix in (".jsonl", ".txt"):  # counted in the bytes, before a string per line exists
        lines = raw.count(b"\n") + (not raw.endswith(b"\n")) - raw.count(b"\n\n")
        check_rows(path.name, lines if suffix == ".jsonl" else lines // TXT_LINES_PER_ROW, limits)
    if suffix in (".jsonl", ".json"):
        check_json_size(path.name, raw, limits)
    text = decode_text(path.name, raw)
    if suffix == ".jsonl":
        records, problems = parse_jsonl(text)
        return records, problems, []
    if suffix == ".json":
        records = parse_json(path.name, text)
        check_rows(path.name, len(records), limits)
        return records, [], []
    if suffix == ".csv":
        return parse_csv(path.name, text, limits)
    records = parse_txt(text)
    check_rows(path.name, len(records), limits)
    return records, [], []


def parse_jsonl(text: str) -> tuple[list[Record], list[RowProblem]]:
    records: list[Record] = []
    problems: list[RowProblem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(RowProblem(number, f"is not valid JSON ({exc.msg} at column {exc.colno})"))
    return records, problems


def parse_json(name: str, text: str) -> list[Record]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BillionError(f"{name} is not valid JSON ({exc.msg} at line {exc.lineno}, column "
                           f"{exc.colno}): fix it, or use .jsonl with one example per line.") from exc
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1 or record_format(value) is not None:
            value = [value]
        else:
            value = lists[0]
    if not isinstance(value, list):
        raise BillionError(f"{name} must hold a list of examples (objects), not a {type(value).__name__}.")
    return list(enumerate(value, start=1))


def parse_csv(name: str, text: str, limits: Limits = DEFAULT_LIMITS
              ) -> tuple[list[Record], list[RowProblem], list[str]]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = []
        for row in reader:
            rows.append(row)
            check_rows(name, len(rows), limits)
    except csv.Error as exc:
        raise BillionError(f"{name} is not valid CSV ({exc}): check its quoting.") from exc
    if not reader.fieldnames:
        raise BillionError(f"{name} has no header row: the first row must name the fields, "
                           "e.g. instruction,output.")
    records: list[Record] = []
    formulas = 0
    for number, row in enumerate(rows, start=2):
        # Cells past the header end up under the None key: they have no field name, so drop them.
        cells = {k.strip(): (v or "") for k, v in row.items() if k is not None}
        formulas += sum(1 for v in cells.values() if v.startswith(FORMULA_PREFIXES))
        records.append((number, cells))
    warnings = []
    if formulas:
        warnings.append(f"{formulas} CSV cell(s) start with = + - or @ (spreadsheet formula "
                        "characters): they are kept as plain text, never evaluated")
    return records, [], warnings


def parse_txt(text: str) -> list[Record]:
    """Blocks separated by blank lines; one example per line when there is no blank line."""
    lines = text.splitlines()
    if not any(not line.strip() for line in lines):
        return [(n, {"text": line}) for n, line in enumerate(lines, start=1) if line.strip()]
    records: list[Record] = []
    block: list[str] = []
    start = 0
    for number, line in enumerate([*lines, ""], start=1):
        if line.strip():
            start = start or number
            block.append(line)
        elif block:
            records.append((start, {"text": "\n".join(block)}))
            block, start = [], 0
    return records


# ---- formats --------------------------------------------------------------------------------------

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
