"""A quiet start: no library notes on stderr, bitsandbytes not imported unless asked for, and real
warnings still shown. Each check runs in a fresh process, as a person would start billion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("BILLION_VERBOSE", None)
    return subprocess.run([sys.executable, *(["-c", code] if code else []), *args], capture_output=True,
                          text=True, timeout=300, cwd=REPO, env=env)


@pytest.mark.slow  # 5 s: test_cli.py::test_models_lists_every_entry_with_availability checks the same run's empty stderr
def test_models_command_prints_nothing_on_stderr():
    out = python("", "-m", "billion", "models")
    assert out.returncode == 0 and "smollm2-135m" in out.stdout
    assert out.stderr == ""


def test_the_app_builds_without_the_training_stack_or_bitsandbytes():
    # bitsandbytes logs a warning at import on some CPUs; only int8/int4 or training may import it.
    out = python("import sys, app\n"
                 "app.build_demo()\n"
                 "heavy = ('bitsandbytes', 'peft', 'transformers.trainer')\n"
                 "print(sorted(m for m in heavy if m in sys.modules))")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_library_deprecations_are_hidden_and_real_warnings_are_not():
    out = python(
        "import warnings\n"
        "from billion.core.logs import quiet_libraries\n"
        "quiet_libraries()\n"
        "warnings.warn_explicit('LIBRARY-NOTE', FutureWarning, 'modeling_utils.py', 1,\n"
        "                       module='transformers.modeling_utils')\n"
        "warnings.warn_explicit('OUR-FUTURE', FutureWarning, 'battle.py', 1, module='billion.arena.battle')\n"
        "warnings.warn_explicit('LIBRARY-PROBLEM', UserWarning, 'modeling_utils.py', 2,\n"
        "                       module='transformers.modeling_utils')\n")
    assert out.returncode == 0, out.stderr
    assert "LIBRARY-NOTE" not in out.stderr
    assert "OUR-FUTURE" in out.stderr and "LIBRARY-PROBLEM" in out.stderr
