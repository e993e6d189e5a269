"""`python -m billion`: one subcommand per module in billion/commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from billion.commands import COMMAND_MODULES
from billion.core.errors import BillionError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m billion", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"billion.commands.{name}")
        except ImportError as exc:  # one broken optional command must not take the others down
            logging.getLogger(__name__).warning("command %s unavailable: %s", name, exc)
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        return int(args.func(args) or 0)
    except BillionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
