"""The package picture holds: dependencies point down, only the UI imports gradio or spaces.

Imports are read from the source with `ast` (nothing is imported), including those inside functions
and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "billion"
# What each part of billion may import from billion, besides itself (billion.context is "context").
ALLOWED = {
    "core": set(),
    "store": {"core"},
    "endpoints": {"core"},
    "arena": {"core", "store", "endpoints"},
    "spec": {"core"},
    "train": {"core", "store"},
    "bench": {"core", "store", "arena", "endpoints"},
    "context": {"core", "store", "arena", "train"},
    "commands": {"core", "store", "arena", "spec", "train", "bench", "context", "endpoints"},
    "cli": {"core", "commands", "context"},
    "ui": {"core", "store", "arena", "spec", "train", "bench", "context", "endpoints"},
    "__main__": {"cli"},
    "__init__": {"core"},
}
UI_ONLY = ("gradio", "spaces")


def part(path: Path) -> str:
    """core, store, ... for billion/<part>/x.py; the module name for billion/<module>.py."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def imported(path: Path, package: str | None = None) -> set[str]:
    """Every module name path imports (relative imports resolved against its package)."""
    names = set()
    package = package or ".".join(("billion", *path.relative_to(PACKAGE).parent.parts))
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from .x (level 1) is in this package, from ..x in its parent
                parents = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base]).strip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def billion_parts(names: set[str]) -> set[str]:
    return {name.split(".")[1] for name in names if name.startswith("billion.") and name.count(".") >= 1}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_graph_sees_every_module():
    assert {part(m) for m in MODULES} == set(ALLOWED)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_dependencies_point_down(module):
    own = part(module)
    used = billion_parts(imported(module)) - {own}
    # A part's name as an import target: billion.context, billion.cli, billion.core ...
    assert used <= ALLOWED[own], f"{module.relative_to(PACKAGE)} imports {sorted(used - ALLOWED[own])}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_only_the_ui_imports_gradio_or_spaces(module):
    if part(module) == "ui":
        return
    bad = {name for name in imported(module) if name.split(".")[0] in UI_ONLY}
    assert not bad, f"{module.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_the_check_catches_a_wrong_import(tmp_path):
    """The parser finds imports in functions and relative ones (else the tests above prove nothing)."""
    fake = tmp_path / "probe.py"
    fake.write_text("def f():\n    import gradio\n    from ..arena import ratings\n")
    names = imported(fake, package="billion.store")
    assert "gradio" in names and "billion.arena.ratings" in names
    assert billion_parts(names) == {"arena"}


def test_each_package_names_its_api_without_loading_torch():
    """`from billion.<package> import <name>` works for every name in __all__, and `import
    billion.core` alone loads no torch, pandas or transformers."""
    script = (
        "import sys, importlib\n"
        "import billion.core\n"
        "heavy = [m for m in ('torch', 'pandas', 'transformers') if m in sys.modules]\n"
        "for p in ('core', 'store', 'arena', 'spec', 'train', 'bench'):\n"
        "    m = importlib.import_module('billion.' + p)\n"
        "    assert m.__all__ and sorted(m.__all__) == sorted(dir(m)), p\n"
        "    for name in m.__all__:\n"
        "        getattr(m, name)\n"
        "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
