"""`models`: the registry as a table, with whether each entry can load now and why not."""

from __future__ import annotations

import argparse

from billion.context import AppContext
from billion.core.availability import available_all
from billion.core.table import format_table
from billion.endpoints.config import MODELS_FILE_ENV, configured_endpoints


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
    endpoints = configured_endpoints(ctx.settings.models_file)
    if endpoints:
        print(f"\nendpoint models ({MODELS_FILE_ENV}):")
        print(format_table(["name", "model", "server", "key variable"],
                           [[e.name, e.model, e.base_url, e.api_key_env or ""] for e in endpoints]))
    return 0
