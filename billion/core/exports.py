"""A package's public names, imported on first use (PEP 562), so `import billion.core` stays light.

Each package `__init__` lists its API as {module: names} and calls `public_api` once:

    __all__, __getattr__, __dir__ = public_api(__name__, {"billion.arena.battle": ("Battle", ...)})
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def public_api(package: str, modules: Mapping[str, Sequence[str]]
               ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """(__all__, __getattr__, __dir__) for a package whose names live in `modules`."""
    home = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__() -> list[str]:
        return sorted(home)

    return sorted(home), __getattr__, __dir__
