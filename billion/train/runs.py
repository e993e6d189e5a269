"""Training a run folder (billion.train.folder): to its end, or in time slices, from any process.

`train_slice` reads everything from the run folder and writes everything back to it, so the process
that trains a run can be a child of the app (billion.train.child, started by
billion.train.manager.RunManager) or a ZeroGPU call, and a killed run resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from billion.core.errors import BillionError
from billion.store.store import Store
from billion.train.config import TrainConfig
from billion.train.data import TrainDataset
from billion.train.events import AnswerPair, EventLog, TrainEvent
from billion.train.folder import (ACTIVE_STATES, CLI_OWNER, FINAL_STATES, RunState, create_run,  # noqa: F401
                                  event_log, new_run_id, read_events, read_examples, read_run,
                                  record_in_store, run_path, update_run)
from billion.train.process import ProcessRecord


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    output_dir: str
    adapter_dir: str
    adapter_zip: str
    steps: int
    max_steps: int
    stopped: bool
    train_loss: float | None
    eval_loss_before: float | None
    eval_loss_after: float | None
    tokens_per_s: float | None
    train_seconds: float
    #: each held-out prompt answered with the adapter off and on
    answers: tuple[AnswerPair, ...]
    merged_dir: str | None = None
    #: how the before/after answers were sampled (the model's recommendation, loops cut)
    answer_sampling: str = ""


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: RunState
    step: int
    max_steps: int
    #: number of events so far: pass it back to `events(run_id, since)` for only the new ones
    events: int
    error: str | None = None
    result: TrainResult | None = None
    #: who may stop, resume, discard and publish it (CLI_OWNER: started from the command line)
    owner: str = CLI_OWNER


def failure_message(exc: BaseException) -> str:
    """Why a run failed, as the person sees it: the cause and, where known, the fix."""
    if isinstance(exc, BillionError):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return (f"Out of memory while training ({text[:200]}): lower the batch size or cutoff, "
                "turn on gradient checkpointing, or use QLoRA on a GPU, then start a new run.")
    return text


# ---- training a run -------------------------------------------------------------------------------

def open_session(run_dir: Path, events: EventLog, loaded=None):
    from billion.train.session import TrainingSession

    record = read_run(run_dir)
    config = TrainConfig.from_dict(record["config"])
    return TrainingSession(config, read_examples(run_dir), run_dir, events, loaded=loaded)


def probe_run(config: TrainConfig, dataset: TrainDataset, steps: int = 3, time_budget_s: float | None = None,
              loaded=None):
    """A few timed training steps before committing to a run: tokens/s, peak memory, ETA, warnings."""
    from billion.train.session import TrainingSession

    with tempfile.TemporaryDirectory() as scratch:
        session = TrainingSession(config, dataset.examples, Path(scratch), loaded=loaded)
        return session.probe(steps, time_budget_s)


def train_slice(run_dir: Path, max_seconds: float | None = None, stop: threading.Event | None = None,
                events: EventLog | None = None, loaded=None, probe_steps: int = 0,
                store: Store | None = None, time_limit_s: float | None = None,
                checkpoint_s: float | None = None) -> TrainResult | None:
    """Train a run for up to max_seconds, checkpoint, and finish it when its last step is done.

    Returns the result when the run is finished (or stopped), None when another slice is needed.
    Everything is read from and written to the run folder, so slices may run in separate processes
    (e.g. separate ZeroGPU calls); `loaded` lets tests pass a ready model. probe_steps > 0 first
    times that many steps (on a throwaway copy of the adapter) and emits a "probe" event with the ETA.
    time_limit_s: seconds of training the whole run may take; then it stops and keeps its adapter.
    checkpoint_s: save a checkpoint this often, so a killed run resumes from there.
    store: where the run's state is mirrored (None: the run folder only).
    """
    started = time.monotonic()
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    if record["status"] in ("done", "stopped"):
        return result_from(record)
    events = events if events is not None else event_log(run_dir)
    try:
        update_run(run_dir, {"status": "training", "error": None,
                             "process": ProcessRecord.current().to_dict()}, store)
        session = open_session(run_dir, events, loaded)
        results = _before_training(run_dir, session, record, probe_steps, time_limit_s, store)
        session.elapsed_s = results.get("train_seconds", 0.0)
        left = None if time_limit_s is None else max(0.0, time_limit_s - session.elapsed_s)
        budget = min((s for s in (max_seconds, left) if s is not None), default=None)
        outcome = session.train(stop=stop, deadline=None if budget is None else started + budget,
                                checkpoint_s=checkpoint_s)
        results.update(step=outcome.step, max_steps=outcome.max_steps, train_seconds=session.elapsed_s,
                       step_s=outcome.step_s)
        # The run's own time limit ended this slice (not a ZeroGPU slice's length): it stops here.
        limit_binds = left is not None and (max_seconds is None or left <= max_seconds)
        timed_out = limit_binds and not outcome.finished and not outcome.stopped
        if not outcome.finished and not outcome.stopped and not timed_out:
            events.append(TrainEvent("status", step=outcome.step, max_steps=outcome.max_steps,
                                     message=f"slice ended at step {outcome.step}; resume to continue"))
            update_run(run_dir, {"status": "paused", "results": results}, store)
            return None
        if timed_out:
            events.append(TrainEvent("status", step=outcome.step, max_steps=outcome.max_steps,
                                     message=f"reached the limit of {time_limit_s:g} s of training per "
                                     f"run at step {outcome.step}: the adapter keeps the steps done"))
        return finish(run_dir, session, results, stopped=not outcome.finished, store=store)
    except Exception as exc:
        message = failure_message(exc)
        events.append(TrainEvent("error", message=message))
        update_run(run_dir, {"status": "failed", "error": message}, store)
        raise


def _before_training(run_dir: Path, session, record: dict[str, Any], probe_steps: int,
                     time_limit_s: float | None, store: Store | None) -> dict[str, Any]:
    """The eval loss before training and the probe, once per run (a resumed run has them)."""
    results = dict(record.get("results") or {})
    if "eval_loss_before" not in results:
        results["eval_loss_before"] = session.evaluate()
        update_run(run_dir, {"results": results}, store)
    if probe_steps and "probe" not in results:
        results["probe"] = dataclasses.asdict(session.probe(probe_steps, time_limit_s))
        update_run(run_dir, {"results": results}, store)
    return results


def finish(run_dir: Path, session, results: dict[str, Any], stopped: bool,
           store: Store | None = None) -> TrainResult:
    """Eval loss after, before/after answers, the adapter and its zip (and a merged model if asked)."""
    from billion.train.session import remove_checkpoints, zip_adapter

    record = update_run(run_dir, {"status": "evaluating"}, store)
    events = session.events
    train_events = [e for e in events.since(0) if e.kind == "train"]
    results["train_loss"] = train_events[-1].loss if train_events else None
    results["tokens_per_s"] = next((e.tokens_per_s for e in reversed(train_events) if e.tokens_per_s), None)
    results["eval_loss_after"] = session.evaluate()
    adapter = session.save_adapter()
    results["adapter_dir"], results["adapter_zip"] = str(adapter), str(zip_adapter(adapter))
    if record.get("merge"):
        results["merged_dir"] = str(session.export_merged())
    pairs = session.answers(record.get("prompts") or [])
    results["answers"] = [[p.prompt, p.before, p.after] for p in pairs]
    results["answer_sampling"] = sampling_note(session.config.model)
    remove_checkpoints(session)
    state = "stopped" if stopped else "done"
    record = update_run(run_dir, {"status": state, "results": results}, store)
    events.append(TrainEvent("stopped" if stopped else "done", step=results.get("step", 0),
                             max_steps=results.get("max_steps", 0), eval_loss=results["eval_loss_after"],
                             message=f"adapter saved to {adapter}"))
    return result_from(record)


def result_from(record: dict[str, Any]) -> TrainResult:
    r = record.get("results") or {}
    return TrainResult(run_id=record["id"], output_dir=record["output_dir"], adapter_dir=r.get("adapter_dir", ""),
                       adapter_zip=r.get("adapter_zip", ""), steps=r.get("step", 0), max_steps=r.get("max_steps", 0),
                       stopped=record["status"] == "stopped", train_loss=r.get("train_loss"),
                       eval_loss_before=r.get("eval_loss_before"), eval_loss_after=r.get("eval_loss_after"),
                       tokens_per_s=r.get("tokens_per_s"), train_seconds=r.get("train_seconds", 0.0),
                       answers=tuple(AnswerPair(*a) for a in r.get("answers", [])), merged_dir=r.get("merged_dir"),
                       answer_sampling=r.get("answer_sampling", ""))


def sampling_note(model: str) -> str:
    """How the before/after answers are drawn, in words for the result."""
    from billion.train.session import comparison_settings

    s = comparison_settings(model)
    how = "greedy" if s.greedy else f"temperature {s.temperature:g}, top-p {s.top_p:g}, seed {s.seed}"
    return f"answers: {how} (the model's recommended sampling); a repeating loop is stopped and marked"


def slice_seconds(step_s: float, steps: int, budget_s: float, overhead_s: float = 30.0) -> int:
    """How long a time-limited call (a ZeroGPU `spaces.GPU` duration) should be for `steps` more steps.

    Capped at budget_s; overhead_s covers loading the model, evaluation and the checkpoint.
    """
    return int(min(budget_s, overhead_s + steps * step_s * 1.2))
