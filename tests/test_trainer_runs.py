"""The trainer tab's run handlers (billion.ui.trainer_runs) without a server: ZeroGPU slices, owners."""

from __future__ import annotations

import pytest

from billion.core.errors import BillionError
from billion.train.config import TrainConfig
from billion.train.data import load_dataset
from billion.train.folder import read_events
from billion.ui import trainer_runs

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny work on a shared 2-core CPU (conftest.py)


def test_zerogpu_runs_train_in_slices_that_resume(ctx, tiny_dir, data_file, monkeypatch):
    monkeypatch.setattr(trainer_runs, "ON_ZEROGPU", True)
    config = TrainConfig(model=str(tiny_dir), rank=4, alpha=8, target_modules="q_proj,v_proj", max_steps=3,
                         batch_size=2, eval_fraction=0.0, precision="fp32", device="cpu")
    run_id = trainer_runs.launch_run(ctx, config, load_dataset(data_file), [], 0, owner="browser:a")
    assert ctx.runs.status(run_id).state == "created"  # a folder only: no process on ZeroGPU
    calls = []

    def one_slice(run: str, seconds: int) -> bool:
        # The first slice's time is already spent after one step (a ZeroGPU call that ran out).
        calls.append(seconds)
        budget = 1e-6 if len(calls) == 1 else None
        return ctx.runs.train_slice(run, max_seconds=budget) is not None

    trainer_runs.train_in_slices(ctx, one_slice, run_id)
    status = ctx.runs.status(run_id, "browser:a")
    assert len(calls) == 2 and status.state == "done" and status.result.steps == 3
    assert [e.step for e in read_events(ctx.runs.path(run_id)) if e.kind == "train"] == [1, 2, 3]
    assert calls[1] <= trainer_runs.ZEROGPU_SLICE_BUDGET_S


def test_identify_and_caller():
    token, owner = trainer_runs.identify(None)
    assert len(token) == 32 and owner.startswith("browser:")
    assert trainer_runs.identify(token) == (token, owner)  # the same browser, the same owner
    assert trainer_runs.identify("../../x")[0] != "../../x"  # a forged token is replaced
    assert trainer_runs.caller(owner, None) == owner
    with pytest.raises(BillionError, match="no session"):
        trainer_runs.caller(None, None)
