import subprocess
import sys

from billion.core.registry import MODELS


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "billion", *args], capture_output=True, text=True,
                          timeout=timeout, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})


def test_models_lists_every_entry_with_availability():
    out = run_cli("models")
    assert out.returncode == 0, out.stderr
    for spec in MODELS:
        assert spec.alias in out.stdout
    assert "hub unreachable" in out.stdout and "offline, from package" in out.stdout


def test_chat_one_and_two_models(tiny_dir):
    out = run_cli("chat", "--model", str(tiny_dir), "--max-new-tokens", "5", "Hello")
    assert out.returncode == 0, out.stderr
    assert "tokens/s" in out.stdout
    out = run_cli("chat", "--compare", str(tiny_dir), str(tiny_dir), "--max-new-tokens", "5", "Hello")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("tokens/s") == 2 and " | " in out.stdout


def test_bad_input_exits_2_with_a_message(tiny_dir):
    out = run_cli("chat", "--model", "no-such-model", "Hello")
    assert out.returncode == 2 and "Unknown model" in out.stderr
    out = run_cli("chat", "--model", str(tiny_dir), "--max-new-tokens", "0", "Hello")
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
