"""`finetune`: train a LoRA adapter on a data file, print the loss per step and before/after answers.

The run trains in a process of its own (billion.train.child), as in the app; this command follows
its run folder. `--list` shows the runs, `--resume RUN` trains an interrupted run on from its checkpoint, `--discard RUN`
deletes one; the app lists runs started here as "command line" runs (read-only there).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from billion.context import AppContext
from billion.core.errors import BillionError
from billion.core.paths import ASSETS
from billion.train.config import TrainConfig

SAMPLE_DATA = ASSETS / "sample_lora" / "pirate.jsonl"
SAMPLE_PROMPTS = ASSETS / "sample_lora" / "held_out.json"
DEFAULT = TrainConfig()


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("finetune", help="train a LoRA adapter and compare answers before/after")
    # dest = the TrainConfig field each option sets (TrainConfig.from_values reads them)
    parser.add_argument("--model", default=DEFAULT.model, help="alias, hub id, folder or .gguf")
    parser.add_argument("--data", default=str(SAMPLE_DATA),
                        help=".jsonl/.json/.csv/.parquet/.txt (default: the pirate sample)")
    parser.add_argument("--epochs", type=float, default=DEFAULT.epochs)
    parser.add_argument("--max-steps", type=int, default=DEFAULT.max_steps,
                        help="optimizer steps; 0 = use --epochs")
    parser.add_argument("--rank", type=int, default=DEFAULT.rank)
    parser.add_argument("--alpha", type=int, default=None, help="default: 2 x rank")
    parser.add_argument("--lr", dest="learning_rate", type=float, default=DEFAULT.learning_rate,
                        help="peak learning rate")
    parser.add_argument("--batch-size", type=int, default=DEFAULT.batch_size)
    parser.add_argument("--grad-accum", type=int, default=DEFAULT.grad_accum)
    parser.add_argument("--cutoff", type=int, default=DEFAULT.cutoff, help="tokens per example")
    parser.add_argument("--targets", dest="target_modules", default=DEFAULT.target_modules,
                        help="attention, all-linear, or module names")
    parser.add_argument("--precision", default=DEFAULT.precision, choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--qlora", action="store_true", help="4-bit base through bitsandbytes")
    parser.add_argument("--eval-fraction", type=float, default=DEFAULT.eval_fraction)
    parser.add_argument("--seed", type=int, default=DEFAULT.seed)
    parser.add_argument("--prompts", default=None,
                        help="JSON list of held-out prompts (default: the sample's, with the sample data)")
    parser.add_argument("--merge", action="store_true", help="also export a merged model")
    parser.add_argument("--probe-steps", type=int, default=0,
                        help="time this many steps first and print the ETA (0 = skip)")
    parser.add_argument("--out", default=None, help="folder for the run (default: data dir/runs)")
    parser.add_argument("--resume", metavar="RUN", default=None,
                        help="train an interrupted (or paused, or failed) run on from its checkpoint")
    parser.add_argument("--discard", metavar="RUN", default=None, help="delete a run that is not training")
    parser.add_argument("--list", action="store_true", help="list the runs (id, state, model, owner) and exit")
    parser.set_defaults(func=run)


def held_out_prompts(args: argparse.Namespace) -> list[str]:
    if args.prompts:
        return [str(p) for p in json.loads(Path(args.prompts).read_text())]
    if Path(args.data).resolve() == SAMPLE_DATA.resolve():
        return json.loads(SAMPLE_PROMPTS.read_text())[:4]
    return []


def print_event(event) -> None:
    if event.kind == "train":
        speed = f"{event.tokens_per_s:6.0f} tok/s" if event.tokens_per_s else ""
        eta = f"  ETA {event.eta_s:4.0f} s" if event.eta_s is not None else ""
        print(f"step {event.step:4d}/{event.max_steps}  epoch {event.epoch:4.2f}  loss {event.loss:.4f}  "
              f"lr {event.learning_rate:.2e}  {speed}{eta}", flush=True)
    elif event.kind == "eval":
        print(f"step {event.step:4d}/{event.max_steps}  eval loss {event.eval_loss:.4f}", flush=True)
    elif event.kind == "probe":
        print(f"probe: {event.tokens_per_s:.0f} tokens/s, about {event.eta_s:.0f} s for "
              f"{event.max_steps} steps" + (f"; warning: {event.message}" if event.message else ""), flush=True)
    elif event.kind in ("status", "error"):
        print(event.message, flush=True)


def run(args: argparse.Namespace, ctx: AppContext) -> int:
    from billion.train.data import load_dataset
    from billion.train.manager import RunManager

    manager = (RunManager(Path(args.out), store=ctx.store, models=ctx.models, limits=ctx.limits,
                          checkpoint_s=ctx.settings.train_checkpoint_s) if args.out else ctx.runs)
    if args.list:
        for record in manager.runs():
            print(f"{record['id']}  {record['status']:<11}  {record['config']['model']}  "
                  f"{record.get('owner', '')}" + (f"  ({record['error']})" if record.get("error") else ""))
        return 0
    if args.discard:
        manager.discard(args.discard)
        print(f"run {args.discard} discarded")
        return 0
    if args.resume:
        manager.resume(args.resume)
        run_id = args.resume
        print(f"run {run_id}: resuming from its last checkpoint")
    else:
        config = TrainConfig.from_values(vars(args))
        dataset = load_dataset(args.data)
        report = dataset.report
        print(f"{report.path}: {report.format} format, {report.usable}/{report.rows} usable rows")
        for line in [*map(str, report.problems[:10]), *report.warnings]:
            print(f"  {line}")
        run_id = manager.start(config, dataset, held_out_prompts(args), merge=args.merge,
                               probe_steps=args.probe_steps)
        print(f"run {run_id}: training {config.model} (rank {config.rank}, lr {config.learning_rate}, "
              f"precision {config.precision}); Ctrl+C stops at the next step and keeps the adapter")
    status = follow(manager, run_id)
    if status.result is None:
        raise BillionError(f"run {run_id} ended {status.state}: {status.error or 'no adapter was saved'}")
    return report_result(status.result)


def follow(manager, run_id: str):
    """Print the run's events as its process writes them, until it ends; Ctrl+C asks it to stop."""
    from billion.train.folder import ACTIVE_STATES

    seen = 0
    while True:
        try:
            status = manager.wait(run_id, timeout=0.5)
        except KeyboardInterrupt:
            with contextlib.suppress(BillionError):
                manager.stop(run_id)
            print("stopping at the next step...", flush=True)
            continue
        for event in manager.events(run_id, seen):
            print_event(event)
            seen += 1
        if status.state not in ACTIVE_STATES:
            return status


def report_result(result) -> int:
    before, after = result.eval_loss_before, result.eval_loss_after
    if before is not None and after is not None:
        print(f"\neval loss: {before:.4f} before -> {after:.4f} after")
    speed = f", {result.tokens_per_s:.0f} tokens/s" if result.tokens_per_s else ""
    print(f"{result.steps}/{result.max_steps} steps in {result.train_seconds:.0f} s{speed}"
          + (" (stopped early)" if result.stopped else ""))
    for pair in result.answers:
        print(f"\n### {pair.prompt}\n--- before:\n{pair.before}\n--- after:\n{pair.after}")
    print(f"\nadapter: {result.adapter_dir}\nzip: {result.adapter_zip}")
    if result.merged_dir:
        print(f"merged model: {result.merged_dir}")
    return 0
