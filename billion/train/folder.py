"""A training run's folder: the one place its state lives, written by the process that trains it
and read by any process that follows it (the app, the CLI, a reloaded page).

<runs root>/<run_id>/ holds:
  run.json       config, owner, data hash, dataset report, prompts, status, results, and the
                 process training it now (pid + start time, so others can tell it is alive)
  data.jsonl     the normalised rows (chat messages)
  events.jsonl   progress events, one JSON line each, appended as they happen
  process.log    what the training process printed (its last lines explain a crash)
  checkpoints/   the trainer's last checkpoint while the run is unfinished
  adapter/ adapter.zip   the PEFT adapter once trained or stopped (merged/ when asked)
Runs are mirrored into the project's store (billion.store) when one is given: the folder stays the
source of truth.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Sequence

from billion.core.errors import BillionError
from billion.store.store import Store
from billion.train.config import TrainConfig
from billion.train.data import Example, TrainDataset
from billion.train.events import EventLog, TrainEvent

log = logging.getLogger(__name__)
RunState = Literal["created", "training", "evaluating", "done", "stopped", "paused", "failed",
                   "interrupted"]
FINAL_STATES = ("done", "stopped", "failed")
#: a process is (or should be) training the run
ACTIVE_STATES = ("created", "training", "evaluating")
#: the owner of runs started from the command line (listed in the app, read-only there)
CLI_OWNER = "cli"
#: one folder name: letters, digits, "_", "-", "." (never first, so never "..")
_RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def run_path(run_id: str, root: Path) -> Path:
    """The folder of run `run_id` under the runs root. Run ids come from pages and API calls, so
    anything but one plain folder name (a path, "..") is refused before it touches the disk."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise BillionError(f"No training run {run_id!r}: pick a run from the list.")
    return Path(root) / run_id


def read_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise BillionError(f"{run_dir} is not a training run (no run.json).")
    return json.loads(path.read_text())


def update_run(run_dir: Path, changes: dict[str, Any], store: Store | None = None) -> dict[str, Any]:
    """Write changes to run.json and mirror them into the store (if given)."""
    record = {**read_run(run_dir), **changes}
    write_json(Path(run_dir) / "run.json", record)
    record_in_store(store, record, created=False)
    return record


def write_json(path: Path, value: Any) -> None:
    """Atomically: a reader (another process) never sees half a file, and two writers never share
    a temporary file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(json.dumps(value, indent=1, ensure_ascii=False))
    os.replace(temporary, path)


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
               root: Path, merge: bool = False, store: Store | None = None,
               owner: str = CLI_OWNER) -> Path:
    """A new run folder under root with its config, data and held-out prompts; nothing is trained
    yet. owner: who may follow, stop, resume, discard and publish it (billion.train.manager)."""
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
              "owner": owner, "config": config.to_dict(), "data_hash": report.data_hash,
              "output_dir": str(run_dir),
              "dataset": {"path": report.path, "format": report.format, "rows": report.rows,
                          "usable": report.usable, "problems": [str(p) for p in report.problems[:50]],
                          "warnings": list(report.warnings)},
              "prompts": [p for p in prompts if p.strip()], "merge": merge, "status": "created",
              "results": None, "error": None}
    write_json(run_dir / "run.json", record)
    record_in_store(store, record, created=True)
    return run_dir


def read_examples(run_dir: Path) -> tuple[Example, ...]:
    lines = (Path(run_dir) / "data.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return tuple(Example(row=r["row"], messages=tuple(r["messages"]), raw_text=r["raw_text"]) for r in rows)


def read_events(run_dir: Path, since: int = 0) -> tuple[TrainEvent, ...]:
    """The run's events from index `since`. Another process may be appending: a last line without
    its newline is not finished yet and is left for the next read."""
    path = Path(run_dir) / "events.jsonl"
    if not path.is_file():
        return ()
    lines = path.read_text(encoding="utf-8").split("\n")[:-1][since:]
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


def append_event(run_dir: Path, event: TrainEvent) -> None:
    """One event, from a process that does not hold the run's EventLog (the one following it)."""
    _append_line(Path(run_dir) / "events.jsonl", json.dumps(event.to_dict(), ensure_ascii=False))


def log_tail(run_dir: Path, lines: int = 6) -> str:
    """The last lines the training process printed (its traceback, when it crashed)."""
    path = Path(run_dir) / "process.log"
    if not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:])[-600:]
