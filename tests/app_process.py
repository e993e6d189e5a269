"""The whole app as a real separate process (`python app.py`) on a loopback port, for load and crash
checks: start it on a data folder, read its memory from /proc, stop it or SIGKILL it.

tests/app_server.py serves the app inside the test process instead; this one can be killed.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Memory:
    rss_bytes: int
    peak_bytes: int  # the kernel's VmHWM: the true peak, not a sample


@dataclass
class AppProcess:
    """`python app.py` on a loopback port with its own data folder; its output goes to a log file."""

    process: subprocess.Popen
    url: str
    data: Path
    log: Path

    @property
    def db(self) -> Path:
        return self.data / "votes.sqlite3"

    def memory(self) -> Memory:
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0]) * 1024
        return Memory(fields["VmRSS"], fields["VmHWM"])

    def reset_peak(self) -> bool:
        """Start VmHWM again from the current RSS (Linux >= 4.0); False where that is not allowed."""
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def start_app(data: Path, budget_gb: float | None = None, concurrency: int | None = None,
              timeout_s: float = 180.0, env: dict[str, str] | None = None) -> AppProcess:
    """Launch app.py on a free port and return once it answers HTTP (the caller must stop it)."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "BILLION_DATA_DIR": str(data), "BILLION_DB": str(data / "votes.sqlite3"),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    if budget_gb is not None:
        env["BILLION_MODEL_BUDGET_GB"] = str(budget_gb)
    env.pop("BILLION_HUB_DATASET", None)  # votes stay local: no Hub sync thread in a load test
    if concurrency is not None:
        env["BILLION_CONCURRENCY"] = str(concurrency)
    data.mkdir(parents=True, exist_ok=True)
    log = data / f"app-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "app.py")], cwd=REPO_ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    app = AppProcess(process, f"http://127.0.0.1:{port}/", data, log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{app.log_tail()}")
        try:
            if httpx.get(app.url, timeout=2).status_code == 200:
                return app
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    app.stop()
    raise RuntimeError(f"app.py did not answer within {timeout_s:.0f} s:\n{app.log_tail()}")
