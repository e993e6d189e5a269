"""`arena`: the arena leaderboard from the vote store, or all battles exported as JSONL / CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from billion.arena.ratings import RatingTable, compute_ratings
from billion.context import AppContext
from billion.core.errors import BillionError
from billion.core.table import format_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("arena", help="arena ratings table, or export of all battles")
    parser.add_argument("--ratings", action="store_true", help="print the rating table")
    parser.add_argument("--export", metavar="PATH", help="write all battles to PATH (.jsonl or .csv)")
    parser.add_argument("--rounds", type=int, default=200, help="bootstrap rounds for the 95%% CI")
    parser.add_argument("--db", default=None, help="store file (default: env BILLION_DB or the data dir)")
    parser.set_defaults(func=run)


def format_ratings(table: RatingTable) -> str:
    rows = [[r.rank, r.model, f"{r.rating:.0f}", f"{r.ci_low:.0f} to {r.ci_high:.0f}", r.votes,
             f"{100 * r.win_rate:.0f}%", f"{r.elo:.0f}"] for r in table.ratings]
    text = format_table(["rank", "model", "rating", "95% CI", "votes", "win rate", "Elo"], rows)
    excluded = f"; {table.n_flagged} flagged battles left out" if table.n_flagged else ""
    return (f"{text}\n{table.n_battles} battles counted{excluded}; "
            f"CI from {table.bootstrap_rounds} bootstrap rounds.")


def run(args: argparse.Namespace, ctx: AppContext) -> int:
    if not args.ratings and not args.export:
        raise BillionError("Nothing to do: pass --ratings and/or --export PATH.")
    store = ctx.store  # the file --db names (billion.cli.settings_for)
    if args.export:
        path = Path(args.export)
        if path.suffix == ".jsonl":
            count = store.export_jsonl(path)
        elif path.suffix == ".csv":
            count = store.export_csv(path)
        else:
            raise BillionError(f"Cannot export to {path.name}: use a .jsonl or .csv file name.")
        print(f"Exported {count} battles to {path}.")
    if args.ratings:
        table = compute_ratings(store.battles_frame(voted_only=True), bootstrap_rounds=args.rounds)
        if not table.ratings:
            print("No counted votes yet: run some battles in the Arena tab.")
        else:
            print(format_ratings(table))
    return 0
