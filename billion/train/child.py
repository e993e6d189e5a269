"""`python -m billion.train.child RUN_DIR`: train one run folder to its end, in a process of its own.

billion.train.manager.RunManager starts this process and follows the run folder it writes (as
LLaMA-Factory's web UI runs `llamafactory-cli train` and follows its log): a crash or an
out-of-memory here ends this process only. SIGTERM or SIGINT stops training at the next step; the
run then saves its adapter and ends "stopped". Exit status 0: the run ended done or stopped; 1: it
failed (the reason is in run.json and events.jsonl).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import traceback
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m billion.train.child", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="the run folder (billion.train.folder)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="seconds of training the run may take; it then stops and keeps its adapter")
    parser.add_argument("--checkpoint-every", type=float, default=60.0,
                        help="save a checkpoint this often (seconds), to resume from after a kill")
    parser.add_argument("--probe-steps", type=int, default=0, help="time this many steps first (ETA, memory)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    stop = threading.Event()
    # Installed before the heavy imports: a stop asked for while the model loads is not lost.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    args = parse_args(argv)
    from billion.core.logs import quiet_libraries

    quiet_libraries()
    from billion.train.runs import train_slice

    try:
        train_slice(args.run_dir, stop=stop, probe_steps=args.probe_steps, time_limit_s=args.max_seconds,
                    checkpoint_s=args.checkpoint_every)
    except Exception:  # noqa: BLE001 - train_slice wrote the reason into the run folder
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
