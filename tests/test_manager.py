"""RunManager (billion.train.manager): recovery of runs whose process is gone, ownership of runs,
and the limits a run passes before anything expensive starts (issue 13, findings 1, 5, 7, 9)."""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from billion.core.errors import BillionError
from billion.core.limits import DEFAULT_LIMITS, Limits
from billion.train.config import TrainConfig
from billion.train.data import load_dataset
from billion.train.folder import CLI_OWNER, create_run, read_events, read_run, update_run
from billion.train.manager import RunManager
from billion.train.runs import train_slice

FAULTS = Path(__file__).with_name("train_child_faults.py")

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(tiny_dir, **changes) -> TrainConfig:
    values = dict(model=str(tiny_dir), rank=4, alpha=8, target_modules="q_proj,v_proj", max_steps=4,
                  batch_size=2, eval_fraction=0.0, precision="fp32", device="cpu", seed=0)
    return TrainConfig(**{**values, **changes})


def killed_mid_run(tiny_dir, data_file, root: Path, owner: str = CLI_OWNER) -> str:
    """A run whose process died after its first step (and checkpoint), while run.json still says
    "training": what an app restart or a machine reboot leaves behind."""
    run_dir = create_run(tiny_config(tiny_dir), load_dataset(data_file), root=root, owner=owner)
    assert train_slice(run_dir, max_seconds=1e-6) is None  # one step, its checkpoint, then paused
    gone = {"pid": 2**22 + 17, "started": 1.0, "host": socket.gethostname()}
    update_run(run_dir, {"status": "training", "process": gone})
    return run_dir.name


def cli(ctx, *argv: str) -> int:
    from billion.commands import finetune

    parser = argparse.ArgumentParser()
    finetune.register(parser.add_subparsers())
    args = parser.parse_args(["finetune", *argv])
    return args.func(args, ctx)


def test_a_run_whose_process_is_gone_is_interrupted_then_resumes_from_its_checkpoint(
        tiny_dir, data_file, tmp_path, ctx, capsys):
    run_id = killed_mid_run(tiny_dir, data_file, tmp_path)
    manager = RunManager(tmp_path)  # the app starting again
    assert manager.recover() == [run_id]
    status = manager.status(run_id)
    assert status.state == "interrupted" and "checkpoint at step 1" in status.error
    assert read_run(manager.path(run_id))["status"] == "interrupted"
    assert manager.recover() == []  # once
    assert cli(ctx, "--out", str(tmp_path), "--list") == 0
    assert f"{run_id}  interrupted" in capsys.readouterr().out
    assert cli(ctx, "--out", str(tmp_path), "--resume", run_id) == 0
    assert "resuming" in capsys.readouterr().out
    status = manager.status(run_id)
    assert status.state == "done" and status.result.steps == 4
    # Steps 2-4 came from the checkpoint: step 1 was not trained twice.
    assert [e.step for e in read_events(manager.path(run_id)) if e.kind == "train"] == [1, 2, 3, 4]
    assert cli(ctx, "--out", str(tmp_path), "--discard", run_id) == 0
    assert not manager.path(run_id).exists()


def test_runs_belong_to_their_owner(tiny_dir, data_file, tmp_path):
    manager = RunManager(tmp_path)
    alice = killed_mid_run(tiny_dir, data_file, tmp_path, owner="browser:alice")
    from_cli = killed_mid_run(tiny_dir, data_file, tmp_path)
    manager.recover()
    assert {r["id"] for r in manager.runs("browser:alice")} == {alice, from_cli}
    assert {r["id"] for r in manager.runs("browser:bob")} == {from_cli}  # the CLI's: read-only
    assert manager.status(from_cli, "browser:bob").state == "interrupted"
    for act in (manager.resume, manager.discard, manager.stop):
        with pytest.raises(BillionError, match="of yours"):
            act(alice, owner="browser:bob")
        with pytest.raises(BillionError, match="command line"):
            act(from_cli, owner="browser:bob")
    with pytest.raises(BillionError, match="of yours"):
        manager.events(alice, owner="browser:bob")
    manager.discard(alice, owner="browser:alice")
    assert not manager.path(alice).exists()
    with pytest.raises(BillionError, match="No training run"):
        manager.status("../" + from_cli)


def test_steps_over_the_limit_are_refused_before_anything_starts(tiny_dir, data_file, tmp_path):
    manager = RunManager(tmp_path)
    with pytest.raises(BillionError, match=r"1,000,000,000 steps.*at most 2,000"):
        manager.start(tiny_config(tiny_dir, max_steps=10**9), load_dataset(data_file))
    with pytest.raises(BillionError, match="steps"):
        manager.create(tiny_config(tiny_dir, max_steps=10**9), load_dataset(data_file))
    assert list(tmp_path.iterdir()) == []  # no folder, no process


def test_finding_1_memory_is_refused_with_the_fix(tmp_path, long_rows_file):
    """cutoff 2048, 24 rows of ~2,300 words, batch 32 x accumulation 32 on SmolLM2-135M (the probe
    that took the app from 0.7 GB to 15.9 GB): refused before loading anything."""
    manager = RunManager(tmp_path)
    config = TrainConfig(model="smollm2-135m", cutoff=2048, batch_size=32, grad_accum=32, max_steps=10)
    with pytest.raises(BillionError, match=r"would need about .* GB.*lower the batch size or the cutoff"):
        manager.start(config, load_dataset(long_rows_file))
    assert list(tmp_path.iterdir()) == []


def test_runs_at_once_per_person_and_in_all(tiny_dir, data_file, tmp_path):
    limits = replace(DEFAULT_LIMITS, train_runs_per_client=1, train_runs_total=1)
    # A child that only waits: what is counted here is the process, not its training.
    waits = [sys.executable, "-c", "import time; time.sleep(120)"]
    manager = RunManager(tmp_path, limits=limits, child_prefix=waits)
    first = manager.start(tiny_config(tiny_dir, max_steps=400), load_dataset(data_file), owner="browser:a")
    try:
        with pytest.raises(BillionError, match="still training"):
            manager.start(tiny_config(tiny_dir), load_dataset(data_file), owner="browser:a")
        with pytest.raises(BillionError, match="the most it takes at once"):
            manager.start(tiny_config(tiny_dir), load_dataset(data_file), owner="browser:b")
        # Another manager (the CLI, another app process) counts the same run from its folder.
        assert [r["id"] for r in RunManager(tmp_path).training()] == [first]
    finally:
        manager.stop(first)
        status = manager.wait(first, timeout=60)
    assert status.state == "stopped" and "before the run could save anything" in status.error
    second = manager.start(tiny_config(tiny_dir), load_dataset(data_file), owner="browser:b")
    manager.stop(second)
    manager.wait(second, timeout=60)


def test_limits_come_from_the_environment():
    limits = Limits.from_env({"BILLION_LIMIT_TRAIN_MAX_STEPS": "50", "BILLION_LIMIT_TRAIN_MEMORY_GB": "2.5"})
    assert limits.train_max_steps == 50 and limits.train_memory_gb == 2.5
    with pytest.raises(BillionError, match="BILLION_LIMIT_TRAIN_RUNS_TOTAL"):
        Limits.from_env({"BILLION_LIMIT_TRAIN_RUNS_TOTAL": "many"})


def test_a_run_stops_at_its_wall_clock_limit_and_keeps_its_adapter(tiny_dir, data_file, tmp_path):
    """Issue 13 finding 7: a run's seconds are bounded (Limits.train_max_seconds) as its steps are."""
    run_dir = create_run(tiny_config(tiny_dir, max_steps=50), load_dataset(data_file), root=tmp_path)
    result = train_slice(run_dir, time_limit_s=1e-6)  # spent after the first step
    assert result is not None and result.stopped and result.steps == 1
    assert (Path(result.adapter_dir) / "adapter_config.json").is_file()
    assert any("reached the limit of" in e.message for e in read_events(run_dir) if e.kind == "status")
