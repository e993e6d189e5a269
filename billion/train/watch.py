"""Following a run's training process from the app: its memory, its time, how it ended.

The process writes the run folder; the app only watches it. A process over its memory share is
killed (before the machine runs out and takes the app with it), one past its time limit is asked to
stop and then killed, and when it ends without saying why (SIGKILL, a crash) the run is marked
failed with the reason. Its reservation in the model cache's budget is released at the end.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from billion.core.errors import BillionError
from billion.store.store import Store
from billion.train.events import TrainEvent
from billion.train.folder import (ACTIVE_STATES, append_event, log_tail, read_events, read_run,
                                  record_in_store, update_run)
from billion.train.process import exit_reason

GB = 2**30


@dataclass(eq=False)
class Child:
    """A training process this app started, and what it may take."""

    run_dir: Path
    popen: subprocess.Popen
    #: the run's estimated peak memory (billion.train.budget)
    estimate_bytes: int
    #: resident memory past which the process is killed
    memory_limit: int
    #: the estimate, held in the model cache's budget while the process runs (None: no cache)
    reservation: object | None
    #: seconds the run may train; the process stops itself then, this is the backstop
    time_limit_s: float | None
    #: how long a process asked to stop gets before it is killed
    grace_s: float
    started: float = field(default_factory=time.monotonic)
    stop_asked: float | None = None
    kill_reason: str | None = None
    last_status: str = ""
    settled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rss(self) -> int:
        """Resident memory of the process and its children."""
        try:
            process = psutil.Process(self.popen.pid)
            members = [process, *process.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for member in members:
            try:
                total += member.memory_info().rss
            except psutil.Error:
                continue
        return total

    def growth_left(self) -> int:
        """Memory the process may still take on its way to its estimate (0 once it ended)."""
        return max(0, self.estimate_bytes - self.rss()) if self.popen.poll() is None else 0

    def ask_to_stop(self) -> None:
        if self.popen.poll() is None:
            self.stop_asked = self.stop_asked or time.monotonic()
            self.popen.send_signal(signal.SIGTERM)

    def kill(self, reason: str) -> None:
        if self.popen.poll() is None:
            self.kill_reason = self.kill_reason or reason
            self.popen.kill()

    def end(self, timeout_s: float) -> None:
        """Wait for the process to end, killing it after timeout_s."""
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill(f"the training process did not stop within {timeout_s:g} s of being asked")
            self.popen.wait()


def free_memory(device: str = "auto") -> int:
    """Bytes free where the run will train: the GPU's when it trains on CUDA, else the RAM's."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        try:
            return int(torch.cuda.mem_get_info()[0])
        except RuntimeError:
            pass
    return int(psutil.virtual_memory().available)


def watch(child: Child, store: Store | None, poll_s: float = 0.5) -> None:
    """Follow the process until it ends, then settle the run (call from a thread of its own)."""
    while True:
        try:
            code = child.popen.wait(timeout=poll_s)
            break
        except subprocess.TimeoutExpired:
            check(child, store)
    settle(child, code, store)


def check(child: Child, store: Store | None) -> None:
    """One look at a running process: mirror the run's state, enforce memory and time."""
    try:
        record = read_run(child.run_dir)
    except (OSError, ValueError, BillionError):
        record = None  # being written (next time), or discarded as the process ended
    if record is not None and record["status"] != child.last_status:
        child.last_status = record["status"]
        record_in_store(store, record, created=False)
    rss = child.rss()
    if rss > child.memory_limit:
        child.kill(f"the training process used {rss / GB:.1f} GB of memory, over the "
                   f"{child.memory_limit / GB:.1f} GB a run may take here: lower the batch size or "
                   "the cutoff, then start a new run")
    elapsed = time.monotonic() - child.started
    if child.time_limit_s and elapsed > child.time_limit_s + child.grace_s and child.stop_asked is None:
        child.ask_to_stop()
    if child.stop_asked is not None and time.monotonic() - child.stop_asked > child.grace_s:
        child.kill(f"the training process did not stop within {child.grace_s:g} s of being asked")


def settle(child: Child, code: int, store: Store | None) -> None:
    """The process has ended: a run it left training failed, with the reason (once per child)."""
    with child.lock:
        if child.settled:
            return
        child.settled = True
        try:
            try:
                record = read_run(child.run_dir)
            except (OSError, ValueError, BillionError):
                return  # the folder was discarded (deleted run, removed tree): nothing left to settle
            if record["status"] in ACTIVE_STATES:
                record = _fail(child, code, record, store)
            record_in_store(store, record, created=False)
        finally:
            if child.reservation is not None:
                child.reservation.release()


def _fail(child: Child, code: int, record: dict, store: Store | None) -> dict:
    steps = [e.step for e in read_events(child.run_dir) if e.kind == "train"]
    at = f" at step {steps[-1]}" if steps else " before its first step"
    if child.stop_asked is not None and child.kill_reason is None and code == -signal.SIGTERM:
        message = f"Stopped{at}, before the run could save anything."
        append_event(child.run_dir, TrainEvent("stopped", message=message))
        return update_run(child.run_dir, {"status": "stopped", "error": message})
    reason = child.kill_reason or exit_reason(code)
    tail = log_tail(child.run_dir) if code > 0 else ""
    message = f"{reason[0].upper()}{reason[1:]}{at}." + (f" Its last output: {tail}" if tail else "")
    append_event(child.run_dir, TrainEvent("error", message=message))
    return update_run(child.run_dir, {"status": "failed", "error": message})
