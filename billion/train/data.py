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
from dataclasses import dataclass
from pathlib import Path

from billion.core.errors import BillionError
from billion.core.limits import DEFAULT_LIMITS, Limits
from billion.train.formats import (FORMAT_FIELDS, Example, Format, Message, Record, RowProblem,  # noqa: F401 (re-exported)
                                   detect_format, normalise, record_format, unknown_fields_message)
from billion.train.readers import (DATA_SUFFIXES, check_json_size, check_rows, parquet_records,
                                   read_upload)


#: files above this size are refused before they are read (the default of limits.upload_bytes)
MAX_FILE_BYTES = DEFAULT_LIMITS.upload_bytes
#: what an upload may be: each data format, gzipped (name.jsonl.gz), or alone in a .zip
SUFFIXES = (*DATA_SUFFIXES, *(f"{s}.gz" for s in DATA_SUFFIXES), ".zip")
# Cells a spreadsheet would run as formulas; we only ever read them as text.
FORMULA_PREFIXES = ("=", "+", "-", "@")
_MAX_LISTED_PROBLEMS = 5
#: a .txt example may span lines (blocks); its lines are capped at this many times the row limit
TXT_LINES_PER_ROW = 10


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
    if suffix == ".jsonl":  # line by line: one binary or mis-encoded line is that row's problem
        lines, problems = decode_lines(path.name, raw)
        records, bad_json = parse_jsonl_lines(lines)
        return records, sorted(problems + bad_json, key=lambda p: p.row), []
    text = decode_text(path.name, raw)
    if suffix == ".json":
        records = parse_json(path.name, text)
        check_rows(path.name, len(records), limits)
        return records, [], []
    if suffix == ".csv":
        return parse_csv(path.name, text, limits)
    records = parse_txt(text)
    check_rows(path.name, len(records), limits)
    return records, [], []


def decode_lines(name: str, raw: bytes) -> tuple[list[tuple[int, str]], list[RowProblem]]:
    """UTF-8 lines with their numbers, and the lines that are binary or not UTF-8. A file that is
    mostly unreadable is refused whole (decode_text's message)."""
    lines: list[tuple[int, str]] = []
    problems: list[RowProblem] = []
    for number, line in enumerate(raw.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        if b"\x00" in line:
            problems.append(RowProblem(number, "is binary data, not a line of text: remove it"))
            continue
        try:
            lines.append((number, line.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as exc:
            problems.append(RowProblem(number, f"is not UTF-8 text (byte {exc.start + 1} of the "
                                               "line): re-save the file as UTF-8"))
    if len(problems) >= sum(1 for _, text in lines if text.strip()):  # mostly unreadable
        decode_text(name, raw)  # raises: binary, or not UTF-8, as a whole
    return lines, problems


def parse_jsonl(text: str) -> tuple[list[Record], list[RowProblem]]:
    return parse_jsonl_lines(list(enumerate(text.splitlines(), start=1)))


def parse_jsonl_lines(lines: list[tuple[int, str]]) -> tuple[list[Record], list[RowProblem]]:
    records: list[Record] = []
    problems: list[RowProblem] = []
    for number, line in lines:
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
        rows, starts, line = [], [], 1
        for row in reader:  # the spreadsheet row is the line the record starts on
            starts.append(line + 1)
            rows.append(row)
            check_rows(name, len(rows), limits)
            line = reader.line_num
    except csv.Error as exc:
        raise BillionError(f"{name} is not valid CSV ({exc}): check its quoting.") from exc
    if not reader.fieldnames:
        raise BillionError(f"{name} has no header row: the first row must name the fields, "
                           "e.g. instruction,output.")
    problems = []
    if rows and _open_quote_at_end(text):  # the last record swallowed the rest of the file
        rows.pop()
        start = starts.pop()
        problems.append(RowProblem(start, f"opens a quote (\") that is never closed, so lines "
                                          f"{start} to {line} were read as one cell: close the "
                                          "quote, or write a quote inside a cell as two (\"\")"))
    records: list[Record] = []
    formulas = 0
    for number, row in zip(starts, rows):
        # Cells past the header end up under the None key: they have no field name, so drop them.
        cells = {k.strip(): (v or "") for k, v in row.items() if k is not None}
        formulas += sum(1 for v in cells.values() if v.startswith(FORMULA_PREFIXES))
        records.append((number, cells))
    warnings: list[str] = []
    if formulas:
        warnings.append(f"{formulas} CSV cell(s) start with = + - or @ (spreadsheet formula "
                        "characters): they are kept as plain text, never evaluated")
    return records, problems, warnings


def _open_quote_at_end(text: str) -> bool:
    try:
        for _ in csv.reader(io.StringIO(text, newline=""), strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


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
