"""Training runs: one folder each, trained to the end in a background thread or in time slices.

A run folder (<runs root>/<run_id>/, the app's root is Settings.runs_dir) holds everything needed
to resume it in a new process:
  run.json       config, data hash, dataset report, prompts, status, results
  data.jsonl     the normalised rows (chat messages)
  events.jsonl   progress events, so a reloaded page can re-attach
  checkpoints/   the trainer's last checkpoint while the run is unfinished
  adapter/ adapter.zip   the PEFT adapter once trained or stopped (merged/ when asked)
Runs are also listed in the project's store (billion.store.store) with config, data hash and
results, when one is given (`store=`): the run folder stays the source of truth.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Sequence

from billion.core.errors import BillionError
from billion.store.store import Store
from billion.train.data import Example, TrainDataset
from billion.train.events import AnswerPair, EventLog, TrainEvent
from billion.train.config import TrainConfig

log = logging.getLogger(__name__)
RunState = Literal["created", "training", "evaluating", "done", "stopped", "paused", "failed"]
FINAL_STATES = ("done", "stopped", "failed")
#: one folder name: letters, digits, "_", "-", "." (never first, so never "..")
_RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


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


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def run_path(run_id: str, root: Path) -> Path:
    """The folder of run `run_id` under the runs root. Run ids come from pages and API calls, so
    anything but one plain folder name (a path, "..") is refused before it touches the disk."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise BillionError(f"No training run {run_id!r}: pick a run from the list.")
    return Path(root) / run_id


def failure_message(exc: BaseException) -> str:
    """Why a run failed, as the person sees it: the cause and, where known, the fix."""
    if isinstance(exc, BillionError):
        return str(exc)
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return (f"Out of memory while training ({text[:200]}): lower the batch size or cutoff, "
                "turn on gradient checkpointing, or use QLoRA on a GPU, then start a new run.")
    return text


# ---- the run folder ---------------------------------------------------------------------------------

def read_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise BillionError(f"{run_dir} is not a training run (no run.json).")
    return json.loads(path.read_text())


def update_run(run_dir: Path, changes: dict[str, Any], store: Store | None = None) -> dict[str, Any]:
    """Write changes to run.json and mirror them into the store (if given)."""
    record = {**read_run(run_dir), **changes}
    _write_json(Path(run_dir) / "run.json", record)
    record_in_store(store, record, created=False)
    return record


def _write_json(path: Path, value: Any) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(value, indent=1, ensure_ascii=False))
    temporary.replace(path)  # atomic: a reader never sees half a file


def record_in_store(store: Store | None, record: dict[str, Any], created: bool) -> None:
    """Best effort: a store problem must not break a training run."""
    if store is None:
        return
    try:
        fields = dict(status=record["status"], output_dir=record["output_dir"],
                      results=record.get("results"), data_hash=record["data_hash"])
        if created:
            fields.update(base_model=record["config"]["model"], config=record["config"])
        store.upsert_training_run(record["id"], **fields)
    except Exception as exc:  # noqa: BLE001 - logged, the run folder stays the source of truth
        log.warning("could not record training run %s in the store: %s", record.get("id"), exc)


def create_run(config: TrainConfig, dataset: TrainDataset, prompts: Sequence[str] = (), *,
               root: Path, merge: bool = False, store: Store | None = None) -> Path:
    """A new run folder under root with its config, data and held-out prompts; nothing is trained yet."""
    config.validate()
    run_id = new_run_id()
    run_dir = Path(root) / run_id
    run_dir.mkdir(parents=True)
    with (run_dir / "data.jsonl").open("w", encoding="utf-8") as out:
        for example in dataset.examples:
            out.write(json.dumps({"row": example.row, "messages": list(example.messages),
                                  "raw_text": example.raw_text}, ensure_ascii=False) + "\n")
    report = dataset.report
    record = {"id": run_id, "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "config": config.to_dict(), "data_hash": report.data_hash, "output_dir": str(run_dir),
              "dataset": {"path": report.path, "format": report.format, "rows": report.rows,
                          "usable": report.usable, "problems": [str(p) for p in report.problems[:50]],
                          "warnings": list(report.warnings)},
              "prompts": [p for p in prompts if p.strip()], "merge": merge, "status": "created",
              "results": None, "error": None}
    _write_json(run_dir / "run.json", record)
    record_in_store(store, record, created=True)
    return run_dir


def read_examples(run_dir: Path) -> tuple[Example, ...]:
    lines = (Path(run_dir) / "data.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return tuple(Example(row=r["row"], messages=tuple(r["messages"]), raw_text=r["raw_text"]) for r in rows)


def read_events(run_dir: Path, since: int = 0) -> tuple[TrainEvent, ...]:
    path = Path(run_dir) / "events.jsonl"
    if not path.is_file():
        return ()
    lines = path.read_text(encoding="utf-8").splitlines()[since:]
    return tuple(TrainEvent(**json.loads(line)) for line in lines if line.strip())


def event_log(run_dir: Path) -> EventLog:
    """An event log that also appends each event to the run's events.jsonl."""
    path = Path(run_dir) / "events.jsonl"
    log_ = EventLog(sink=lambda e: _append_line(path, json.dumps(e.to_dict(), ensure_ascii=False)))
    for event in read_events(run_dir):
        log_._events.append(event)  # earlier slices' events, without writing them twice
    return log_


def _append_line(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


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
                store: Store | None = None) -> TrainResult | None:
    """Train a run for up to max_seconds, checkpoint, and finish it when its last step is done.

    Returns the result when the run is finished (or stopped), None when another slice is needed.
    Everything is read from and written to the run folder, so slices may run in separate processes
    (e.g. separate ZeroGPU calls); `loaded` lets tests pass a ready model. probe_steps > 0 first
    times that many steps (on a throwaway copy of the adapter) and emits a "probe" event with the ETA.
    store: where the run's state is mirrored (None: the run folder only).
    """
    started = time.monotonic()
    run_dir = Path(run_dir)
    record = read_run(run_dir)
    if record["status"] in ("done", "stopped"):
        return result_from(record)
    events = events if events is not None else event_log(run_dir)
    try:
        session = open_session(run_dir, events, loaded)
        update_run(run_dir, {"status": "training", "error": None}, store)
        results = dict(record.get("results") or {})
        if "eval_loss_before" not in results:
            results["eval_loss_before"] = session.evaluate()
            update_run(run_dir, {"results": results}, store)
        if probe_steps and "probe" not in results:
            results["probe"] = dataclasses.asdict(session.probe(probe_steps))
            update_run(run_dir, {"results": results}, store)
        session.elapsed_s = results.get("train_seconds", 0.0)
        deadline = started + max_seconds if max_seconds else None
        outcome = session.train(stop=stop, deadline=deadline)
        results.update(step=outcome.step, max_steps=outcome.max_steps, train_seconds=session.elapsed_s,
                       step_s=outcome.step_s)
        if not outcome.finished and not outcome.stopped:
            events.append(TrainEvent("status", step=outcome.step, max_steps=outcome.max_steps,
                                     message=f"slice ended at step {outcome.step}; resume to continue"))
            update_run(run_dir, {"status": "paused", "results": results}, store)
            return None
        return finish(run_dir, session, results, stopped=outcome.stopped, store=store)
    except Exception as exc:
        message = failure_message(exc)
        events.append(TrainEvent("error", message=message))
        update_run(run_dir, {"status": "failed", "error": message}, store)
        raise


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
                       answers=tuple(AnswerPair(*a) for a in r.get("answers", [])), merged_dir=r.get("merged_dir"))


def slice_seconds(step_s: float, steps: int, budget_s: float, overhead_s: float = 30.0) -> int:
    """How long a time-limited call (a ZeroGPU `spaces.GPU` duration) should be for `steps` more steps.

    Capped at budget_s; overhead_s covers loading the model, evaluation and the checkpoint.
    """
    return int(min(budget_s, overhead_s + steps * step_s * 1.2))


# ---- background runs ----------------------------------------------------------------------------

@dataclass
class _ActiveRun:
    run_dir: Path
    events: EventLog
    stop: threading.Event
    thread: threading.Thread | None = None
    error: str | None = None
    result: TrainResult | None = None


class RunManager:
    """Background training runs that outlive any browser tab; one run trains at a time.

    A page that reloads calls status() and events(run_id, since) to re-attach; stop() ends a run at
    the next step and keeps its adapter. Runs live in folders under `root` and are mirrored into
    `store` when one is given.
    """

    def __init__(self, root: Path | str, store: Store | None = None):
        self.root = Path(root)
        self.store = store
        self._runs: dict[str, _ActiveRun] = {}
        self._lock = threading.Lock()

    def path(self, run_id: str) -> Path:
        """The folder of run_id (checked to be one plain folder name under root)."""
        return run_path(run_id, self.root)

    def create(self, config: TrainConfig, dataset: TrainDataset, prompts: Sequence[str] = (),
               merge: bool = False) -> str:
        """A run folder only: train_slice trains it (in time slices, e.g. on ZeroGPU)."""
        return create_run(config, dataset, prompts, root=self.root, merge=merge, store=self.store).name

    def train_slice(self, run_id: str, max_seconds: float | None = None) -> TrainResult | None:
        """Train run_id for up to max_seconds; its result once finished, else None (see train_slice)."""
        return train_slice(self.path(run_id), max_seconds=max_seconds, store=self.store)

    def start(self, config: TrainConfig, dataset: TrainDataset, prompts: Sequence[str] = (),
              merge: bool = False, loaded=None, probe_steps: int = 0) -> str:
        with self._lock:
            busy = [rid for rid, run in self._runs.items() if run.thread and run.thread.is_alive()]
            if busy:
                raise BillionError(f"Run {busy[0]} is still training: stop it or wait for it to finish.")
            run_dir = create_run(config, dataset, prompts, root=self.root, merge=merge, store=self.store)
            run = _ActiveRun(run_dir, event_log(run_dir), threading.Event())
            run_id = run_dir.name
            run.thread = threading.Thread(target=self._train, args=(run, loaded, probe_steps),
                                          name=f"train-{run_id}", daemon=True)
            self._runs[run_id] = run
            run.thread.start()
            return run_id

    def _train(self, run: _ActiveRun, loaded, probe_steps: int) -> None:
        try:
            run.result = train_slice(run.run_dir, stop=run.stop, events=run.events, loaded=loaded,
                                     probe_steps=probe_steps, store=self.store)
        except Exception as exc:  # noqa: BLE001 - recorded in run.json and as an error event
            run.error = failure_message(exc)
            log.exception("training run %s failed", run.run_dir.name)

    def _dir(self, run_id: str) -> Path:
        run = self._runs.get(run_id)
        path = run.run_dir if run else self.path(run_id)
        if not (path / "run.json").is_file():
            raise BillionError(f"No training run {run_id!r}.")
        return path

    def status(self, run_id: str) -> RunStatus:
        run_dir = self._dir(run_id)
        record = read_run(run_dir)
        events = self.events(run_id)
        steps = [e for e in events if e.kind in ("train", "done", "stopped")]
        step = steps[-1].step if steps else 0
        max_steps = max((e.max_steps for e in events), default=0)
        run = self._runs.get(run_id)
        state = record["status"]
        if state in ("training", "evaluating") and (run is None or not run.thread.is_alive()):
            state = "failed" if run is not None else "paused"  # the process that trained it is gone
        result = result_from(record) if state in ("done", "stopped") else None
        return RunStatus(run_id, state, step, max_steps, len(events),
                         error=record.get("error") or (run.error if run else None), result=result)

    def events(self, run_id: str, since: int = 0) -> tuple[TrainEvent, ...]:
        run = self._runs.get(run_id)
        return run.events.since(since) if run else read_events(self._dir(run_id), since)

    def stop(self, run_id: str) -> None:
        run = self._runs.get(run_id)
        if run is None or run.thread is None or not run.thread.is_alive():
            raise BillionError(f"Run {run_id} is not training in this process.")
        run.stop.set()

    def wait(self, run_id: str, timeout: float | None = None) -> RunStatus:
        run = self._runs.get(run_id)
        if run is not None and run.thread is not None:
            run.thread.join(timeout)
        return self.status(run_id)

    def runs(self) -> list[dict[str, Any]]:
        """Every run folder's record, newest first."""
        records = []
        for path in self.root.glob("*/run.json"):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return sorted(records, key=lambda r: r.get("created_at", ""), reverse=True)
