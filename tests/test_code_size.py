"""Modules stay under ~350 lines and functions under ~60 (billion/, app.py, benchmarks/), read with ast.

KNOWN_OVER lists what was over when this test came (issue 12), each with its size then as a
ceiling: it may shrink, never grow, and an entry is removed once it fits (the test says when).
A new module or function over the limit fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_LINES = 350
FUNCTION_LINES = 60
#: path (or path::function) -> its size when this test came; owners: other branches in flight
KNOWN_OVER: dict[str, int] = {}


def sources() -> list[Path]:
    return sorted([*ROOT.glob("billion/**/*.py"), ROOT / "app.py", *ROOT.glob("benchmarks/**/*.py")])


def sizes(path: Path) -> dict[str, int]:
    """The module's lines under its path, each function's under path::name."""
    text = path.read_text(encoding="utf-8")
    name = path.relative_to(ROOT).as_posix()
    found = {name: len(text.splitlines())}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            key = f"{name}::{node.name}"
            found[key] = max(found.get(key, 0), node.end_lineno - node.lineno + 1)
    return found


def test_modules_and_functions_stay_small():
    over, grew, fits = [], [], []
    measured: dict[str, int] = {}
    for path in sources():
        measured.update(sizes(path))
    for key, lines in measured.items():
        limit = FUNCTION_LINES if "::" in key else MODULE_LINES
        if lines > limit and key not in KNOWN_OVER:
            over.append(f"{key}: {lines} lines (limit {limit})")
        elif key in KNOWN_OVER and lines > KNOWN_OVER[key]:
            grew.append(f"{key}: {lines} lines, was {KNOWN_OVER[key]}")
    for key in KNOWN_OVER:
        limit = FUNCTION_LINES if "::" in key else MODULE_LINES
        if measured.get(key, 0) <= limit:
            fits.append(key)
    assert not over, "split these (or their functions):\n" + "\n".join(over)
    assert not grew, "these were already over the limit and grew:\n" + "\n".join(grew)
    assert not fits, "these fit now: remove them from KNOWN_OVER:\n" + "\n".join(fits)


def test_the_measure_counts_what_it_should(tmp_path):
    probe = ROOT / "billion" / "core" / "errors.py"
    found = sizes(probe)
    assert found["billion/core/errors.py"] == len(probe.read_text().splitlines())
    assert all(v > 0 for v in found.values())
