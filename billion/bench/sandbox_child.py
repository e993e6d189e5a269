"""The sandboxed child: `python -I sandbox_child.py`, started by billion.bench.sandbox; never imported.

It reads its settings (one JSON line) and its code from stdin, then, in this order: resource
limits; isolation (new user, mount, network, IPC and PID namespaces, an empty root holding only the
interpreter, the system libraries and an empty /tmp, user nobody without capabilities); an audit
hook; and one of three roles (standard library only: the sandbox's root has nothing else):

- "program": run the code and report whether it ran to the end. That report is the program's own
  word (code in the same process can always forge it): used to test the sandbox, never to score.
- "candidate": run untrusted definitions, then answer calls of one function, argument and result as
  plain data, over two pipes to the checker. Nobody asks it for a verdict.
- "checker": run trusted test code with `candidate` a proxy of those calls; the verdict goes to the
  parent on this process's own stdout, which the candidate never holds and cannot reach (another
  PID namespace, no /proc, no ptrace).
"""

import base64
import ctypes
import json
import math
import os
import resource
import secrets
import sys

NS = {"user": 0x10000000, "mount": 0x00020000, "net": 0x40000000, "ipc": 0x08000000,
      "uts": 0x04000000, "pid": 0x20000000}
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
DEVICES = ("null", "zero", "random", "urandom")


def libc_call(libc, name, *args):
    if getattr(libc, name)(*args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}{args[:2]}: {os.strerror(errno)}")


def set_limits(cfg):
    nproc = cfg["processes"] + (0 if os.geteuid() == 0 else user_tasks())
    for name, soft, hard in (("RLIMIT_AS", cfg["memory_bytes"], cfg["memory_bytes"]),
                             ("RLIMIT_CPU", cfg["cpu_seconds"], cfg["cpu_seconds"] + 1),
                             ("RLIMIT_FSIZE", cfg["file_bytes"], cfg["file_bytes"]),
                             ("RLIMIT_NOFILE", cfg["open_files"], cfg["open_files"]),
                             ("RLIMIT_NPROC", nproc, nproc), ("RLIMIT_CORE", 0, 0)):
        resource.setrlimit(getattr(resource, name), (soft, hard))


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


def enter_namespaces(libc, cfg):
    """New namespaces; as non-root a user namespace first, mapping our uid to nobody inside it."""
    flags = NS["mount"] | NS["net"] | NS["ipc"] | NS["uts"] | NS["pid"]
    root = os.geteuid() == 0
    uid, gid = os.geteuid(), os.getegid()
    libc_call(libc, "unshare", flags if root else flags | NS["user"])
    if not root:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{cfg['uid']} {uid} 1"),
                           ("gid_map", f"{cfg['uid']} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text)


def mount(libc, source, target, fstype, flags, data=None):
    libc_call(libc, "mount", source and source.encode(), target.encode(), fstype and fstype.encode(),
              ctypes.c_ulong(flags), data and data.encode())


def build_root(libc, cfg):
    """An empty tmpfs at cfg["dir"] with read-only binds of cfg["binds"], a few devices and an
    empty /tmp; then chroot into it. Nothing else of the host (its /etc, /root, /proc, the app's
    data folder) exists in there."""
    new = cfg["dir"]
    mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    mount(libc, "tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    os.makedirs(new + "/tmp", mode=0o755)  # first: a venv under the host's /tmp is bound inside it
    mount(libc, "tmpfs", new + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={cfg['tmp_bytes']},mode=1777")
    for path in cfg["binds"]:
        target = new + path
        if os.path.islink(path):  # /lib -> usr/lib on merged-usr systems
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            os.symlink(os.readlink(path), target)
            continue
        os.makedirs(target, mode=0o755, exist_ok=True)
        mount(libc, path, target, None, MS_BIND | MS_REC)
        mount(libc, None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.makedirs(new + "/dev", mode=0o755)
    for device in DEVICES:
        open(f"{new}/dev/{device}", "w").close()
        mount(libc, f"/dev/{device}", f"{new}/dev/{device}", None, MS_BIND)
    os.chroot(new)
    os.chdir("/tmp")


def drop_privileges(libc, cfg):
    """User nobody (as root), then no capabilities at all, no way to gain any, no core, no ptrace."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])  # from root to another user: every capability is dropped
    else:  # inside our user namespace we hold all of them: drop them
        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        data = (ctypes.c_uint32 * 6)()
        libc_call(libc, "capset", ctypes.byref(Header(0x20080522, 0)), data)
    libc_call(libc, "prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    libc_call(libc, "prctl", PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc_call(libc, "prctl", PR_SET_PDEATHSIG, 9, 0, 0, 0)  # after setuid, which clears it


def become_pid_one():
    """The namespace's first process is the next child: fork, and let the parent mirror its end."""
    pid = os.fork()
    if pid == 0:
        return
    for fd in range(3, 256):  # keep no pipe alive on the child's behalf
        try:
            os.close(fd)
        except OSError:
            pass
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        import signal
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.waitstatus_to_exitcode(status))


def isolate(cfg):
    """What held, as words for the result's detail. Without namespaces (a container that forbids
    them) the child stays in the host's network and file system: as root it still becomes nobody;
    otherwise it runs as the app's own user, with only the limits and the hook."""
    libc = ctypes.CDLL(None, use_errno=True)
    root, done = os.geteuid() == 0, []
    try:
        if not cfg["namespaces"]:
            raise OSError(0, "turned off")
        enter_namespaces(libc, cfg)
        done.append("namespaces")
        become_pid_one()
        build_root(libc, cfg)
        done.append("empty-root")
    except OSError as exc:
        done.append(f"no-{'empty-root' if done else 'namespaces'}({exc.strerror or exc})")
    try:
        drop_privileges(libc, cfg)
        done.append("user-nobody" if root else "mapped-nobody" if "namespaces" in done else "same-user")
    except OSError as exc:
        done.append(f"privileges-kept({exc.strerror or exc})")
    for name in [m for m in sys.modules if m == "_ctypes" or m.split(".")[0] == "ctypes"]:
        del sys.modules[name]
    stdlib = os.path.dirname(os.__file__)
    if not os.access(stdlib, os.R_OK | os.X_OK):  # e.g. pyenv under /root, and no empty root
        raise PermissionError(f"as user nobody the standard library ({stdlib}) cannot be read: "
                              "install Python where every user can read it, or allow namespaces "
                              "(unshare) where billion runs")
    return done, "/tmp" if "empty-root" in done else cfg["dir"]


def install_hook(home):
    """Refuse sockets, processes, signals, ctypes and writes outside home. Not a boundary (code can
    switch it off through gc); it catches a model's mistakes early, the namespaces hold the line."""
    refused = ("socket.", "ctypes.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn",
               "os.fork", "os.forkpty", "os.system", "os.kill", "os.killpg", "os.startfile",
               "signal.pthread_kill", "pty.", "resource.setrlimit", "resource.prlimit",
               "urllib.", "http.", "ftplib.", "smtplib.", "poplib.", "imaplib.", "nntplib.",
               "telnetlib.", "webbrowser.", "sys.remote_exec")
    refused_imports = {"ctypes", "_ctypes", "_posixsubprocess"}
    writes = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1),
              "os.link": (1,), "os.symlink": (1,), "os.truncate": (0,), "os.chmod": (0,),
              "os.chown": (0,), "os.utime": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,),
              "shutil.copytree": (1,), "shutil.move": (0, 1), "shutil.unpack_archive": (1,)}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    realpath, isdir, fspath = os.path.realpath, os.path.isdir, os.fspath
    busy = [False]

    def inside(path):
        if isinstance(path, int) or path is None:
            return True
        full = realpath(fspath(path))
        full = os.fsdecode(full) if isinstance(full, bytes) else full
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
            if isdir(fspath(path)):
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
        except Exception as exc:
            raise PermissionError(f"sandbox: could not check {event}: {exc}")
        finally:
            busy[0] = False

    sys.addaudithook(hook)


# ---- plain data across the pipe (tuples, sets, non-finite floats, bytes kept as they are) ----------

def encode(value, depth=0):
    if depth > 100:
        raise ValueError("value nested too deeply")
    if value is None or isinstance(value, (bool, str)) or type(value) is int:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$f": repr(value)}
    kinds = {list: "$l", tuple: "$t", set: "$s", frozenset: "$fs"}
    if type(value) in kinds:
        return {kinds[type(value)]: [encode(v, depth + 1) for v in value]}
    if type(value) is dict:
        return {"$d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode()}
    if isinstance(value, complex):
        return {"$c": [encode(value.real), encode(value.imag)]}
    raise TypeError(f"cannot pass a {type(value).__name__} between processes")


def decode(value):
    if not isinstance(value, dict):
        return value
    (tag, inner), = value.items()
    if tag == "$f":
        return float(inner)
    if tag == "$b":
        return base64.b64decode(inner)
    if tag == "$c":
        return complex(decode(inner[0]), decode(inner[1]))
    if tag == "$d":
        return {decode(k): decode(v) for k, v in inner}
    return {"$l": list, "$t": tuple, "$s": set, "$fs": frozenset}[tag](decode(v) for v in inner)


class CandidateError(Exception):
    """The candidate raised, died, or answered something that is not an answer."""


def serve(namespace, entry, calls, replies):
    """Answer each call of namespace[entry] until the checker closes the pipe."""
    for line in calls:
        request = json.loads(line)
        try:
            result = {"ok": encode(namespace[entry](*decode(request["args"])))}
        except BaseException as exc:  # a call that fails is an answer too
            result = {"raised": f"{type(exc).__name__}: {exc}"[:500]}
        result["id"] = request["id"]
        replies.write(json.dumps(result) + "\n")
        replies.flush()


def proxy(calls, replies, max_reply):
    """candidate(*args) for the checker: one call over the pipe, its answer as plain data."""
    def candidate(*args):
        call_id = secrets.token_hex(8)  # a reply written before the call was read cannot match
        calls.write(json.dumps({"id": call_id, "args": encode(list(args))}) + "\n")
        calls.flush()
        line = replies.readline(max_reply + 1)
        if not line or len(line) > max_reply:
            raise CandidateError("the candidate stopped answering" if not line else "answer too large")
        try:
            reply = json.loads(line)
            if reply.get("id") != call_id:
                raise CandidateError("answer to another call")
            if "raised" in reply:
                raise CandidateError(f"the candidate raised {reply['raised']}")
            return decode(reply["ok"])
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise CandidateError(f"not an answer ({type(exc).__name__})") from None
    return candidate


def main():
    cfg = json.loads(sys.stdin.readline())
    code = sys.stdin.read()
    channel = os.fdopen(os.dup(1), "w")

    def report(**fields):
        fields["token"] = cfg["token"]
        channel.write(json.dumps(fields) + "\n")
        channel.flush()

    try:
        set_limits(cfg)
        isolation, home = isolate(cfg)
        devnull = os.open(os.devnull, os.O_RDWR)
        pipes = {name: os.fdopen(fd, "r" if name == "in" else "w") for name, fd in cfg.get("fds", {}).items()}
        install_hook(home)
    except BaseException as exc:
        report(status="error", detail=f"sandbox setup failed: {type(exc).__name__}: {exc}")
        os._exit(3)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    report(status="ready", detail=" ".join(isolation))
    namespace = {}
    try:
        exec(compile(code, "<solution>" if cfg["role"] != "checker" else "<tests>", "exec"), namespace)
        if cfg["role"] == "candidate":
            serve(namespace, cfg["entry"], calls=pipes["in"], replies=pipes["out"])
        elif cfg["role"] == "checker":
            candidate = proxy(calls=pipes["out"], replies=pipes["in"], max_reply=cfg["max_reply"])
            namespace[cfg["entry"]] = candidate  # tests may call the function by its name too
            namespace["check"](candidate)
    except BaseException as exc:  # SystemExit and KeyboardInterrupt count as failures too
        namespace.clear()  # frees what a memory bomb holds, so the report can be written
        report(status="failed", detail=f"{type(exc).__name__}: {exc}"[:500])
    else:
        report(status="passed", detail=" ".join(isolation))
    channel.close()
    os._exit(0)


if __name__ == "__main__":
    main()
