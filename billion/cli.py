"""`python -m billion`: one subcommand per module in billion/commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from billion.commands import COMMAND_MODULES
from billion.core.errors import BillionError
from billion.core.logs import quiet_libraries
from billion.core.settings import Settings


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


def settings_for(args: argparse.Namespace) -> Settings:
    """The environment's settings with this command's --db; a command never copies votes to the hub."""
    changes: dict = {"hub_dataset": None}
    if getattr(args, "db", None):
        changes["db_path"] = Path(args.db)
    return Settings.from_env(**changes)


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    from billion.context import build_context

    hf_logging.disable_progress_bar()
    try:
        ctx = build_context(settings_for(args))
        try:
            return int(args.func(args, ctx) or 0)
        finally:
            ctx.close()
    except BillionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
