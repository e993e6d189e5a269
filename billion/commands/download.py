"""`download`: fetch hub models into the Hugging Face cache ahead of use, and verify them.

Only the files the loader reads; resumable (a stopped download continues from its partial files);
a progress bar per file and one for the total. With HF_HUB_OFFLINE=1 (or no hub) it checks the
cached copies instead. Exit code 0 when every model is present and verified, 2 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from billion.context import AppContext
from billion.core.download import HubUnreachable
from billion.core.download_jobs import DownloadOutcome, DownloadProgress, download
from billion.core.errors import BillionError
from billion.core.registry import COMPARED, MODELS, ModelSpec, resolve, with_revision


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("download", help="fetch hub models into the cache and verify them")
    parser.add_argument("models", nargs="*", metavar="ALIAS",
                        help="registry aliases or hub ids (alias@revision picks a revision)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--compared", action="store_true", help=f"the compared models: {', '.join(COMPARED)}")
    group.add_argument("--all", action="store_true", help="every hub model in the registry")
    parser.add_argument("--revision", help="a branch, tag or commit (e.g. a Pythia checkpoint: step3000)")
    parser.set_defaults(func=run)


def selected(args: argparse.Namespace) -> list[ModelSpec]:
    names = list(args.models)
    if args.compared:
        names += COMPARED
    if args.all:
        names += [m.alias for m in MODELS if m.source.kind == "hub"]
    if not names:
        raise BillionError("Name the models to download (aliases or hub ids), or pass --compared or --all.")
    specs = [resolve(name) for name in dict.fromkeys(names)]
    if args.revision:
        specs = [with_revision(spec, args.revision) for spec in specs]
    return specs


class Bars:
    """tqdm bars for one download: the total first, then one per file."""

    def __init__(self, label: str):
        self.label = label
        self.bars: dict[str, object] = {}
        self.waited = False

    def update(self, progress: DownloadProgress) -> None:
        from tqdm import tqdm

        if progress.state == "waiting" and not self.waited:  # download_lock: another process has it
            self.waited = True
            print(f"{self.label}: waiting for another process downloading {progress.repo_id}",
                  file=sys.stderr)
        if not self.bars and progress.files:
            self.bars["total"] = tqdm(total=progress.total_bytes, desc=f"{self.label} (total)", unit="B",
                                      unit_scale=True, file=sys.stderr, position=0, leave=True)
            for i, f in enumerate(progress.files, start=1):
                self.bars[f.path] = tqdm(total=f.total_bytes, desc=f"  {f.path}", unit="B", unit_scale=True,
                                         file=sys.stderr, position=i, leave=True)
        done = {"total": progress.done_bytes, **{f.path: f.done_bytes for f in progress.files}}
        for key, bar in self.bars.items():
            bar.update(done[key] - bar.n)  # type: ignore[attr-defined]

    def close(self) -> None:
        for bar in reversed(list(self.bars.values())):
            bar.close()  # type: ignore[attr-defined]


def summary(outcome: DownloadOutcome) -> str:
    check, spec = outcome.check, outcome.spec
    where = f"{spec.hub_id} @ {(check.commit or spec.source.revision or 'main')[:12]}"
    if check.folder is None:
        why = f" ({outcome.note})" if outcome.note else ""
        return f"{spec.alias}: MISSING {where}: not in the Hugging Face cache{why}"
    if not check.ok:
        bad = [f.path for f in check.files if not f.ok] + list(check.missing)
        return f"{spec.alias}: DAMAGED {where}: {', '.join(dict.fromkeys(bad))}"
    hashed = sum(f.check in ("sha256", "git-sha1") for f in check.files)
    text = (f"{spec.alias}: present and verified {where}: {len(check.files)} files, "
            f"{check.total_bytes / 1e6:,.1f} MB, {hashed} checked against their sha256/git sha1")
    return text + (f" ({outcome.note})" if outcome.note else "")


def run(args: argparse.Namespace, ctx: AppContext) -> int:
    failures = 0
    for spec in selected(args):
        if spec.source.kind != "hub":
            print(f"{spec.alias}: ships with billion ({spec.source.kind}), nothing to download")
            continue
        bars = Bars(spec.alias)
        try:
            outcome = download(spec, on_progress=bars.update, downloads=ctx.downloads)
        except BillionError as exc:
            if isinstance(exc, HubUnreachable):
                raise  # the same for every model: say it once
            print(f"error: {spec.alias}: {exc}", file=sys.stderr)
            failures += 1
            continue
        finally:
            bars.close()
        print(summary(outcome))
        failures += not outcome.check.ok
    return 2 if failures else 0
