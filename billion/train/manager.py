"""The training runs of one app (or one CLI command): each trains in a process of its own.

`RunManager.start` checks the run against the limits (steps, memory, runs at once), writes its
folder and starts `python -m billion.train.child RUN_DIR` (billion.train.child); a watcher thread
(billion.train.watch) follows the child until it ends. Everything else reads the run folder, so a
reloaded page, another app process or the CLI sees the same run, and a run started from the CLI
shows as training in the app. Runs belong to an owner (a browser, a Hugging Face login, or the
command line): stop, resume, discard and reading someone else's run are refused.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from billion.core.errors import BillionError
from billion.core.limits import DEFAULT_LIMITS, Limits
from billion.store.store import Store
from billion.train.budget import MemoryEstimate, check_run, check_steps, memory_allowance
from billion.train.config import TrainConfig
from billion.train.data import Example, TrainDataset
from billion.train.events import TrainEvent
from billion.train.folder import (ACTIVE_STATES, CLI_OWNER, append_event, create_run, read_events,
                                  read_examples, read_run, run_path, update_run)
from billion.train.process import ProcessRecord, child_command, spawn
from billion.train.runs import RunStatus, TrainResult, result_from, train_slice
from billion.train.watch import Child, free_memory, settle, watch

#: a run just created has this long to get its process going before it counts as interrupted
START_GRACE_S = 60.0


class RunManager:
    """Training runs under `root`, mirrored into `store` when one is given.

    models: the app's model cache; a run's estimated memory is reserved in its budget while it trains.
    owner arguments: who asks (None: the operator, e.g. a CLI command or a test, who may do anything).
    """

    def __init__(self, root: Path | str, store: Store | None = None, models=None,
                 limits: Limits = DEFAULT_LIMITS, checkpoint_s: float = 60.0,
                 child_prefix: Sequence[str] | None = None, stop_grace_s: float = 120.0):
        self.root = Path(root)
        self.store = store
        self.models = models
        self.limits = limits
        self.checkpoint_s = checkpoint_s
        #: replaces `python -m billion.train.child` (tests inject faults into the child this way)
        self.child_prefix = child_prefix
        self.stop_grace_s = stop_grace_s
        self._children: dict[str, Child] = {}
        self._lock = threading.RLock()

    # ---- finding runs -----------------------------------------------------------------------------

    def path(self, run_id: str) -> Path:
        """The folder of run_id (checked to be one plain folder name under root)."""
        return run_path(run_id, self.root)

    def record(self, run_id: str, owner: str | None = None, write: bool = False) -> dict[str, Any]:
        """run.json of a run the owner may see (write=True: may change)."""
        path = self.path(run_id)
        if not (path / "run.json").is_file():
            raise BillionError(f"No training run {run_id!r}: pick a run from the list.")
        record = read_run(path)
        check_owner(record, owner, write)
        return record

    def status(self, run_id: str, owner: str | None = None) -> RunStatus:
        record = self.record(run_id, owner)
        state = self.state(run_id, record)
        if state != record["status"]:
            record = read_run(self.path(run_id))
        events = read_events(self.path(run_id))
        steps = [e for e in events if e.kind in ("train", "done", "stopped")]
        result = result_from(record) if state in ("done", "stopped") else None
        return RunStatus(run_id, state, steps[-1].step if steps else 0,
                         max((e.max_steps for e in events), default=0), len(events),
                         error=record.get("error"), result=result, owner=record.get("owner", ""))

    def state(self, run_id: str, record: dict[str, Any]) -> str:
        """What the run is doing now: run.json's status, unless the process training it is gone."""
        state = record["status"]
        if state not in ACTIVE_STATES:
            return state
        child = self._children.get(run_id)
        if child is not None:
            if child.popen.poll() is None:
                return state
            settle(child, child.popen.returncode, self.store)  # the watcher may not have seen it yet
            return read_run(child.run_dir)["status"]
        process = ProcessRecord.from_dict(record.get("process"))
        if process is not None and process.alive():
            return state
        return "created" if process is None and _age_s(record) < START_GRACE_S else "interrupted"

    def events(self, run_id: str, since: int = 0, owner: str | None = None) -> tuple[TrainEvent, ...]:
        self.record(run_id, owner)
        return read_events(self.path(run_id), since)

    def runs(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Run records, newest first, each with its state now. owner: only that owner's runs and
        those started from the command line (None: every run)."""
        records = []
        for path in self.root.glob("*/run.json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if owner is None or record.get("owner") in (owner, CLI_OWNER):
                records.append({**record, "status": self.state(record["id"], record)})
        return sorted(records, key=lambda r: r.get("created_at", ""), reverse=True)

    def wait(self, run_id: str, timeout: float | None = None) -> RunStatus:
        """The run's status once it is no longer training (or when timeout seconds have passed);
        for a process of this manager, once that process has ended (its memory is back)."""
        child = self._children.get(run_id)
        if child is not None:
            try:
                settle(child, child.popen.wait(timeout), self.store)
            except subprocess.TimeoutExpired:
                pass
            return self.status(run_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status(run_id)
            if status.state not in ACTIVE_STATES or (deadline is not None and time.monotonic() > deadline):
                return status
            time.sleep(0.2)

    def training(self) -> list[dict[str, Any]]:
        """The runs a live process trains now (this app's children, the CLI's, older apps')."""
        return [r for r in self.runs() if r["status"] in ACTIVE_STATES]

    # ---- starting ---------------------------------------------------------------------------------

    def start(self, config: TrainConfig, dataset: TrainDataset, prompts: Sequence[str] = (),
              merge: bool = False, probe_steps: int = 0, owner: str | None = None) -> str:
        """Check the run, write its folder and start its training process; returns the run id."""
        with self._lock:
            estimate, limit = self._admit(config, dataset.examples, owner)
            run_dir = create_run(config, dataset, prompts, root=self.root, merge=merge, store=self.store,
                                 owner=owner or CLI_OWNER)
            self._spawn(run_dir, estimate, limit, probe_steps)
            return run_dir.name

    def resume(self, run_id: str, owner: str | None = None) -> None:
        """Train an interrupted, paused or failed run on from its last checkpoint."""
        with self._lock:
            record = self.record(run_id, owner, write=True)
            state = self.state(run_id, record)
            if state not in ("interrupted", "paused", "failed"):
                raise BillionError(f"Run {run_id} is {state}: only an interrupted, paused or failed "
                                   "run can be resumed.")
            run_dir = self.path(run_id)
            estimate, limit = self._admit(TrainConfig.from_dict(record["config"]), read_examples(run_dir),
                                          owner if owner is not None else record.get("owner"))
            update_run(run_dir, {"status": "created", "error": None, "process": None}, self.store)
            append_event(run_dir, TrainEvent("status", message=f"resumed after it was {state}"))
            self._spawn(run_dir, estimate, limit, probe_steps=0)

    def create(self, config: TrainConfig, dataset: TrainDataset, prompts: Sequence[str] = (),
               merge: bool = False, owner: str | None = None) -> str:
        """A run folder only: train_slice trains it (in time slices, e.g. on ZeroGPU)."""
        check_steps(config, len(dataset.examples), self.limits)
        return create_run(config, dataset, prompts, root=self.root, merge=merge, store=self.store,
                          owner=owner or CLI_OWNER).name

    def train_slice(self, run_id: str, max_seconds: float | None = None) -> TrainResult | None:
        """Train run_id here for up to max_seconds (a ZeroGPU call, itself a process of its own);
        its result once finished, else None (see billion.train.runs.train_slice)."""
        return train_slice(self.path(run_id), max_seconds=max_seconds, store=self.store,
                           time_limit_s=self.limits.train_max_seconds, checkpoint_s=self.checkpoint_s)

    def _admit(self, config: TrainConfig, examples: Sequence[Example],
               owner: str | None) -> tuple[MemoryEstimate, int]:
        """The run's memory estimate and the bytes its process may use; a BillionError that says
        what to change when it is over a limit."""
        self._check_room(owner or CLI_OWNER)
        free = free_memory(config.device) - sum(c.growth_left() for c in self._children.values())
        estimate = check_run(config, examples, self.limits, free)
        return estimate, memory_allowance(free, self.limits)

    def _check_room(self, owner: str) -> None:
        training = self.training()
        mine = [r["id"] for r in training if r.get("owner") == owner]
        if len(mine) >= self.limits.train_runs_per_client:
            raise BillionError(f"Run {mine[0]} is still training: stop it or wait for it to finish "
                               f"(runs at once per person: {self.limits.train_runs_per_client}).")
        if len(training) >= self.limits.train_runs_total:
            raise BillionError(f"{len(training)} runs are training on this server, the most it takes "
                               "at once: try again when one finishes.")

    def _spawn(self, run_dir: Path, estimate: MemoryEstimate, limit: int, probe_steps: int) -> None:
        argv = child_command(run_dir, self.limits.train_max_seconds, self.checkpoint_s, probe_steps,
                             self.child_prefix)
        update_run(run_dir, {"spawned_at": _now()})
        reservation = (self.models.reserve(f"training run {run_dir.name}", estimate.total_bytes)
                       if self.models is not None else None)
        child = Child(run_dir, spawn(argv, run_dir), estimate.total_bytes, limit, reservation,
                      time_limit_s=self.limits.train_max_seconds, grace_s=self.stop_grace_s)
        self._children[run_dir.name] = child
        threading.Thread(target=self._follow, args=(child,), name=f"train-{run_dir.name}",
                         daemon=True).start()

    def _follow(self, child: Child) -> None:
        watch(child, self.store)
        with self._lock:
            self._children.pop(child.run_dir.name, None)

    # ---- ending -----------------------------------------------------------------------------------

    def stop(self, run_id: str, owner: str | None = None) -> None:
        """Ask the run's process to stop at the next step (it then saves its adapter)."""
        record = self.record(run_id, owner, write=True)
        child = self._children.get(run_id)
        if child is not None and child.popen.poll() is None:
            child.ask_to_stop()
            return
        process = ProcessRecord.from_dict(record.get("process"))
        if record["status"] in ACTIVE_STATES and process is not None and process.send():
            return
        raise BillionError(f"Run {run_id} is not training (it is {self.state(run_id, record)}).")

    def discard(self, run_id: str, owner: str | None = None) -> None:
        """Delete a run that is not training: its folder and its row in the store."""
        record = self.record(run_id, owner, write=True)
        state = self.state(run_id, record)
        if state in ACTIVE_STATES:
            raise BillionError(f"Run {run_id} is still training: stop it first.")
        run_dir = self.path(run_id)
        used = [c.get("label") or c["name"] for c in (self.store.arena_contestants() if self.store else ())
                if str(c.get("adapter") or "").startswith(str(run_dir.resolve()))]
        if used:
            raise BillionError(f"The adapter of run {run_id} is in the Arena as '{used[0]}': it stays "
                               "while the Arena rates it.")
        shutil.rmtree(run_dir)
        if self.store is not None:
            self.store.delete_training_run(run_id)

    def recover(self) -> list[str]:
        """At start-up: runs whose process is gone become "interrupted" (resume or discard them)."""
        found = []
        for record in self.runs():
            if record["status"] == "interrupted" and read_run(self.path(record["id"]))["status"] != "interrupted":
                mark_interrupted(self.path(record["id"]), self.store)
                found.append(record["id"])
        return found

    def close(self, timeout_s: float = 15.0) -> None:
        """Stop this manager's training processes (the end of a test or of a CLI command)."""
        children = list(self._children.values())
        for child in children:
            child.ask_to_stop()
        for child in children:
            child.end(timeout_s)


def check_owner(record: dict[str, Any], owner: str | None, write: bool) -> None:
    """Whether `owner` may read (or, with write, change) the run; None is the operator."""
    recorded = record.get("owner")
    if owner is None or recorded == owner:
        return
    if recorded == CLI_OWNER:
        if not write:
            return
        raise BillionError(f"Run {record['id']} was started from the command line: manage it there "
                           f"(python -m billion finetune --resume/--discard {record['id']}).")
    raise BillionError(f"No training run {record['id']!r} of yours: pick one of your runs from the list.")


def mark_interrupted(run_dir: Path, store: Store | None) -> None:
    """Record that the run's process ended without finishing it, and where it can resume from."""
    checkpoints = sorted(Path(run_dir, "checkpoints").glob("checkpoint-*"),
                         key=lambda p: int(p.name.split("-")[-1]))
    steps = [e.step for e in read_events(run_dir) if e.kind == "train"]
    where = (f"resume continues from its checkpoint at step {checkpoints[-1].name.split('-')[-1]}"
             if checkpoints else "no checkpoint was saved yet, so resume starts it again")
    message = (f"The process training this run ended without finishing it (the app or the machine "
               f"restarted, or it was killed) at step {steps[-1] if steps else 0}: {where}; or discard it.")
    append_event(run_dir, TrainEvent("error", message=message))
    update_run(run_dir, {"status": "interrupted", "error": message}, store)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _age_s(record: dict[str, Any]) -> float:
    """Seconds since the run's process was started (or the run created, for a ZeroGPU run)."""
    try:
        started = datetime.fromisoformat(record.get("spawned_at") or record["created_at"])
    except (KeyError, ValueError):
        return float("inf")
    return (datetime.now(timezone.utc) - started).total_seconds()
