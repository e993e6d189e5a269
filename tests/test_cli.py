import io
import os
import subprocess
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout

from billion.core.registry import MODELS


def run_cli(*args, timeout=300):
    """`python -m billion ARGS` in a fresh process, as a person runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("BILLION_VERBOSE", None)
    return subprocess.run([sys.executable, "-m", "billion", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def run_cli_here(*args) -> subprocess.CompletedProcess:
    """The same command in this process: billion.cli.main with the arguments, as billion/__main__.py
    calls it, its stdout and stderr captured. A fresh process costs ~4-8 s of imports on 2 shared
    cores; this one has them. What main changes for the process (environment, warning filters,
    transformers' logging) is put back afterwards."""
    from transformers.utils import logging as hf_logging

    from billion.cli import main

    environ, verbosity = dict(os.environ), hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    out, err = io.StringIO(), io.StringIO()
    try:
        with warnings.catch_warnings(), redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's refusals exit, as in the process
                code = exc.code
    finally:
        os.environ.clear()
        os.environ.update(environ)
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    return subprocess.CompletedProcess(["billion", *args], code, out.getvalue(), err.getvalue())


def test_models_lists_every_entry_with_availability():
    out = run_cli("models")
    assert out.returncode == 0, out.stderr
    for spec in MODELS:
        assert spec.alias in out.stdout
    assert "hub unreachable" in out.stdout and "offline, from package" in out.stdout
    assert out.stderr == ""  # no library notes at a quiet start (the test_logs.py check, this run)


def test_chat_one_and_two_models(tiny_dir, cli):
    out = cli("chat", "--model", str(tiny_dir), "--max-new-tokens", "5", "Hello")
    assert out.returncode == 0, out.stderr
    assert "tokens/s" in out.stdout
    out = cli("chat", "--compare", str(tiny_dir), str(tiny_dir), "--max-new-tokens", "5", "Hello")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("tokens/s") == 2 and " | " in out.stdout


def test_bad_input_exits_2_with_a_message(tiny_dir, cli):
    out = cli("chat", "--model", "no-such-model", "Hello")
    assert out.returncode == 2 and "Unknown model" in out.stderr
    out = cli("chat", "--model", str(tiny_dir), "--max-new-tokens", "0", "Hello")
    assert out.returncode == 2 and "max_new_tokens" in out.stderr


def test_cli_defaults_are_the_engine_requests():
    """Each command fills its feature's request; with no options it asks for that request's defaults."""
    from billion.bench.runner import BenchRequest
    from billion.cli import build_parser
    from billion.commands import bench, chat, race
    from billion.core.chat import ChatRequest
    from billion.spec.race import RaceRequest
    from billion.train.config import TrainConfig

    parser = build_parser()
    assert chat.request_from(parser.parse_args(["chat", "hi"])) == ChatRequest("hi")
    assert race.request_from(parser.parse_args(["race", "hi"])) == RaceRequest("hi")
    assert bench.request_from(parser.parse_args(["bench"])) == BenchRequest().validated()
    assert TrainConfig.from_values(vars(parser.parse_args(["finetune"]))) == TrainConfig()
