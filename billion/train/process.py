"""The process that trains a run: started apart from the app (so its crash or out-of-memory never
takes the app down, and its memory is all returned when it ends), known by pid and start time (so
any process can tell whether it still runs), stopped by a signal.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import psutil

from billion.core.paths import REPO_ROOT

#: how the app starts a run's training process: `python -m billion.train.child RUN_DIR ...`
CHILD_MODULE = "billion.train.child"


@dataclass(frozen=True)
class ProcessRecord:
    """Which process trains a run, as run.json records it. A pid alone could be reused by another
    process after a restart; pid, start time and host together cannot."""

    pid: int
    #: psutil's create_time of the process
    started: float
    host: str

    @classmethod
    def current(cls) -> ProcessRecord:
        pid = os.getpid()
        return cls(pid, psutil.Process(pid).create_time(), socket.gethostname())

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> ProcessRecord | None:
        try:
            return cls(int(value["pid"]), float(value["started"]), str(value["host"])) if value else None
        except (KeyError, TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def _process(self) -> psutil.Process | None:
        if self.host != socket.gethostname():
            return None
        try:
            process = psutil.Process(self.pid)
            same = abs(process.create_time() - self.started) < 0.01
            return process if same and process.status() != psutil.STATUS_ZOMBIE else None
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self._process() is not None

    def rss_bytes(self) -> int:
        """Resident memory of the process and its children (0 once it is gone)."""
        process = self._process()
        if process is None:
            return 0
        total = 0
        for member in (process, *process.children(recursive=True)):
            try:
                total += member.memory_info().rss
            except psutil.Error:
                continue
        return total

    def send(self, sig: int = signal.SIGTERM) -> bool:
        """Signal the process if it is still the one recorded; False when it is gone."""
        process = self._process()
        if process is None:
            return False
        try:
            process.send_signal(sig)
            return True
        except psutil.Error:
            return False


def child_command(run_dir: Path, max_seconds: float | None, checkpoint_s: float, probe_steps: int = 0,
                  prefix: Sequence[str] | None = None) -> list[str]:
    """The command line of a run's training process. prefix replaces `python -m billion.train.child`
    (tests put a script there that injects a fault into the child, then runs the same main)."""
    argv = list(prefix or (sys.executable, "-m", CHILD_MODULE))
    argv += [str(run_dir), "--checkpoint-every", f"{checkpoint_s:g}", "--probe-steps", str(probe_steps)]
    if max_seconds:
        argv += ["--max-seconds", f"{max_seconds:g}"]
    return argv


def spawn(argv: Sequence[str], run_dir: Path) -> subprocess.Popen:
    """Start the training process; what it prints goes to the run's process.log. It stays in the
    app's process group, so Ctrl+C in the app's terminal stops it too (it then keeps its adapter)."""
    env = dict(os.environ)
    # billion must import in the child exactly as it does here, wherever the app was started from.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with (Path(run_dir) / "process.log").open("ab") as out:
        return subprocess.Popen(list(argv), cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)


def exit_reason(code: int) -> str:
    """What an exit status says about how the training process ended."""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        cause = (" (on Linux the out-of-memory killer ends processes this way)"
                 if -code == signal.SIGKILL else "")
        return f"the training process was killed by {name} (signal {-code}){cause}"
    return f"the training process exited with status {code}"
