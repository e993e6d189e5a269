"""`models`: the registry as a table, with whether each entry can load now and why not."""

from __future__ import annotations

import argparse

from billion.context import AppContext
from billion.core.availability import available_all
from billion.core.table import format_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("models", help="list registry models and their availability")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: AppContext) -> int:
    rows = []
    for item in available_all(ctx.hub):
        spec = item.spec
        rows.append([spec.alias, spec.hub_id or spec.source.location, spec.size_label, spec.family,
                     spec.tokenizer_group, "yes" if spec.gated else "", ",".join(spec.drafts),
                     "yes" if item.ok else "no", item.reason])
    print(format_table(["alias", "model", "params", "family", "tokenizer", "gated", "drafts",
                        "available", "reason"], rows))
    return 0
