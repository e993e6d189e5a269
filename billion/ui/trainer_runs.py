"""The trainer tab's runs: start, follow, stop, resume, discard, publish, each for its owner only.

Runs train in a process of their own (the app context's RunManager); these handlers start them,
poll their folders and signal them, so a reload re-attaches and a crash of a run is only that run's.
On ZeroGPU a run trains in time slices instead, each one `spaces.GPU` call (itself a forked
process), resuming from the run folder's checkpoint.

Who owns a run: the Hugging Face login on a Space with OAuth; else this browser, by a random token
the page keeps in its localStorage (gr.BrowserState; the page's load event turns it into the owner
id kept in a gr.State); else, for a script, its API session (one gradio_client.Client). Nobody sees,
stops, resumes, discards or publishes another owner's run; runs started from the command line are
listed to everyone here, read-only.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from billion.arena.contestants import register_adapter_contestant
from billion.context import AppContext
from billion.core.errors import BillionError
from billion.train.config import TrainConfig
from billion.train.data import TrainDataset, load_dataset
from billion.train.folder import ACTIVE_STATES, CLI_OWNER
from billion.train.runs import RunStatus, TrainResult, read_run, slice_seconds
from billion.ui.common import ON_ZEROGPU, friendly_errors, refusing_uploads
from billion.ui.downloads import download_notes, to_download
from billion.ui.trainer_view import (answers_frame, loss_figure, progress_markdown, result_markdown,
                                     run_label)

#: a ZeroGPU call is capped; each slice asks for at most this much
ZEROGPU_SLICE_BUDGET_S = 240
MAX_PROMPTS = 8
#: the settings controls, in order: each is the TrainConfig field of the same name
SETTING_FIELDS = ("model", "rank", "alpha", "dropout", "target_modules", "learning_rate", "epochs",
                  "max_steps", "cutoff", "batch_size", "grad_accum", "eval_fraction", "seed", "precision",
                  "qlora")
NOTHING_TRAINING = ("⏹ No run was training. A download of the base model under way was cancelled "
                    "(unless another session waits for it): what arrived stays in the cache.")
_TOKEN = re.compile(r"[0-9a-f]{32}")
SliceFn = Callable[[str, int], bool]


# ---- who asks -----------------------------------------------------------------------------------

def _login(profile: gr.OAuthProfile | None) -> str | None:
    username = getattr(profile, "username", None) if profile is not None else None
    return f"hf:{username}" if username else None


def identify(token: str | None, profile: gr.OAuthProfile | None = None) -> tuple[str, str]:
    """On page load: (this browser's token, made the first time; the owner id of this page)."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        token = secrets.token_hex(16)
    return token, _login(profile) or "browser:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def caller(owner: str | None, request: gr.Request | None, profile: gr.OAuthProfile | None = None) -> str:
    """Who calls: the login, else the page's owner id (from `identify`), else the API session."""
    if _login(profile) or owner:
        return _login(profile) or owner  # type: ignore[return-value]
    session = getattr(request, "session_hash", None) if request is not None else None
    if not session:
        raise BillionError("This call belongs to no session: reload the page.")
    return "session:" + hashlib.sha256(session.encode()).hexdigest()[:32]


# ---- starting -----------------------------------------------------------------------------------

def prompt_list(text: str | None) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()][:MAX_PROMPTS]


def launch_run(ctx: AppContext, config: TrainConfig, dataset: TrainDataset, prompts: list[str],
               probe_steps: int, owner: str) -> str:
    """A run in its own process; on ZeroGPU only the run folder (slices train it: train_in_slices)."""
    if ON_ZEROGPU:
        return ctx.runs.create(config, dataset, prompts, owner=owner)
    return ctx.runs.start(config, dataset, prompts, probe_steps=probe_steps, owner=owner)


def slice_duration(run_id: str, seconds: int) -> int:
    return seconds


def gpu_slice(ctx: AppContext, run_id: str, seconds: int) -> bool:
    """One ZeroGPU call's worth of training; True when the run is finished."""
    return ctx.runs.train_slice(run_id, max_seconds=seconds - 30) is not None


def train_in_slices(ctx: AppContext, train_slice: SliceFn, run_id: str | None) -> None:
    """ZeroGPU: slices until done, each sized from the step time measured by the last one."""
    if not ON_ZEROGPU or not run_id:
        return
    seconds = ZEROGPU_SLICE_BUDGET_S
    while not train_slice(run_id, seconds):
        results = read_run(ctx.runs.path(run_id)).get("results") or {}
        left = results.get("max_steps", 0) - results.get("step", 0)
        seconds = slice_seconds(results.get("step_s") or 10.0, left, ZEROGPU_SLICE_BUDGET_S)


@friendly_errors
def start_training(ctx: AppContext, owner: str | None, dataset: TrainDataset | None, prompts: str,
                   probe_steps: float, *settings):
    """Check the settings (the SETTING_FIELDS controls), download the base model where it is not
    cached yet (its progress in the note; Stop cancels it), then start a run (its first steps are a
    timed probe: ETA, memory). Yields (run picker, note); last the picker at the new run."""
    if not owner:
        raise BillionError("This page has not finished loading: reload it, then start again.")
    if dataset is None or not dataset.examples:
        raise BillionError("No usable training rows: upload a data file (or use the sample) first.")
    config = TrainConfig.from_values(dict(zip(SETTING_FIELDS, settings)))
    for note in download_notes(to_download([config.model]), ctx.downloads):
        yield gr.skip(), note
    run_id = launch_run(ctx, config, dataset, prompt_list(prompts), int(probe_steps), owner)
    yield gr.update(choices=run_choices(ctx, owner), value=run_id), ""


# ---- following ----------------------------------------------------------------------------------

def run_choices(ctx: AppContext, owner: str, records: list[dict[str, Any]] | None = None
                ) -> list[tuple[str, str]]:
    """The run picker's entries: the owner's runs and the command line's; each label carries the
    run's state."""
    records = ctx.runs.runs(owner) if records is None else records
    return [(run_label(record, mine=record.get("owner") != CLI_OWNER), record["id"]) for record in records]


def list_runs(ctx: AppContext, owner: str | None, request: gr.Request = None):  # type: ignore[assignment]
    """On page load: the caller's runs, the latest active one picked (so a reload re-attaches)."""
    who = caller(owner, request)
    records = ctx.runs.runs(who)
    active = next((r["id"] for r in records if r.get("owner") == who and _still_training(r["status"])), None)
    return gr.update(choices=run_choices(ctx, who, records), value=active)


def _still_training(state: str) -> bool:
    return state in ACTIVE_STATES or (ON_ZEROGPU and state == "paused")


def exported_zip(ctx: AppContext, result: TrainResult) -> str | None:
    """A copy of the adapter zip in the served export folder (never the run folder itself)."""
    if not result.adapter_zip or not Path(result.adapter_zip).is_file():
        return None
    folder = ctx.settings.exports_dir / f"adapter-{result.run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"adapter-{result.run_id}.zip"
    if not target.is_file():
        shutil.copyfile(result.adapter_zip, target)
    return str(target)


def attach(run_id: str | None):
    """Follow another run: forget the drawn events and let the timer poll it."""
    return [], gr.Timer(active=bool(run_id))


def poll(ctx: AppContext, run_id: str | None, seen: list, owner: str | None,
         request: gr.Request = None):  # type: ignore[assignment]
    """One timer tick: new events since the last tick. Returns (events, loss curves, progress,
    result, answers, adapter zip, timer, run list); skips redrawing when nothing changed."""
    if not run_id:
        return [], gr.skip(), "", gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False), gr.skip()
    try:
        who = caller(owner, request)
        status = ctx.runs.status(run_id, who)
        new = ctx.runs.events(run_id, len(seen), who)
    except BillionError as exc:
        return (seen, gr.skip(), f"❌ {exc}", gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False),
                gr.skip())
    events = [*seen, *new]
    running = _still_training(status.state)
    if running and not new and seen:
        return seen, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    progress = progress_markdown(status, events, _probe(ctx, run_id))
    # The run list's labels carry each run's state: relabel once this run has ended (same value,
    # so the picker does not re-attach).
    labels = gr.skip() if running else gr.update(choices=run_choices(ctx, who))
    result = status.result
    if result is None:
        return (events, loss_figure(events), progress, "", answers_frame(None), None,
                gr.Timer(active=running), labels)
    return (events, loss_figure(events), progress, result_markdown(result), answers_frame(result),
            exported_zip(ctx, result), gr.Timer(active=False), labels)


def _probe(ctx: AppContext, run_id: str) -> dict[str, Any] | None:
    try:
        return (read_run(ctx.runs.path(run_id)).get("results") or {}).get("probe")
    except BillionError:
        return None


# ---- acting on a run ----------------------------------------------------------------------------

@friendly_errors
def stop_run(ctx: AppContext, run_id: str | None, owner: str | None = None,
             request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> str:  # type: ignore[assignment]
    if not run_id:  # Stop also cancels a start still downloading its base model (build_trainer_tab)
        return NOTHING_TRAINING
    if ON_ZEROGPU:
        raise BillionError("On ZeroGPU a run trains in short slices; it cannot be stopped mid-slice.")
    ctx.runs.stop(run_id, caller(owner, request, profile))
    gr.Info("Stopping at the next step; the adapter keeps the steps done.")
    return f"Stopping run `{run_id}` at the next step…"


@friendly_errors
def resume_run(ctx: AppContext, run_id: str | None, owner: str | None = None,
               request: gr.Request = None, profile: gr.OAuthProfile | None = None):  # type: ignore[assignment]
    """Train an interrupted run on from its checkpoint. Returns (run picker, note)."""
    if not run_id:
        raise BillionError("No run is selected.")
    who = caller(owner, request, profile)
    ctx.runs.resume(run_id, who)
    return gr.update(choices=run_choices(ctx, who), value=run_id), f"Resuming run `{run_id}`…"


@friendly_errors
def discard_run(ctx: AppContext, run_id: str | None, owner: str | None = None,
                request: gr.Request = None, profile: gr.OAuthProfile | None = None):  # type: ignore[assignment]
    """Delete a run that is not training, and its served adapter copy. Returns (run picker, note)."""
    if not run_id:
        raise BillionError("No run is selected.")
    who = caller(owner, request, profile)
    ctx.runs.discard(run_id, who)
    shutil.rmtree(ctx.settings.exports_dir / f"adapter-{run_id}", ignore_errors=True)
    return gr.update(choices=run_choices(ctx, who), value=None), f"Run `{run_id}` discarded."


@friendly_errors
def send_to_arena(ctx: AppContext, run_id: str | None, label: str, owner: str | None = None,
                  request: gr.Request = None, profile: gr.OAuthProfile | None = None) -> str:  # type: ignore[assignment]
    if not run_id:
        raise BillionError("No run is selected.")
    who = caller(owner, request, profile)
    record = ctx.runs.record(run_id, who, write=True)
    status = ctx.runs.status(run_id, who)
    if status.result is None or not status.result.adapter_dir:
        raise BillionError(f"Run {run_id} has no adapter yet: wait for it to finish (or stop it).")
    base = record["config"]["model"]
    contestant = register_adapter_contestant(status.result.adapter_dir, base, label or f"lora-{run_id}",
                                             store=ctx.store, owner=who)
    return (f"✅ `{contestant.label}` ({base} + LoRA) joined the Arena pool: it appears in new "
            "battles and can be benchmarked in the Leaderboard tab.")


@friendly_errors
def train_api(ctx: AppContext, train_slice: SliceFn, path: str | None, model: str, max_steps: float,
              rank: float, learning_rate: float, cutoff: float, prompts: str, owner: str | None = None,
              request: gr.Request = None, profile: gr.OAuthProfile | None = None):  # type: ignore[assignment]
    """Train synchronously: waits for the run. Yields (summary, adapter zip): while the base model
    downloads (first use here) a summary {"state": "downloading", "download": progress}."""
    if not path:
        raise BillionError("Upload a training data file (.jsonl, .json, .csv, .parquet or .txt).")
    who = caller(owner, request, profile)
    dataset = refusing_uploads(load_dataset)(path)  # a refused upload is deleted
    # alpha follows the rank; every other setting is TrainConfig's default
    config = TrainConfig.from_values(dict(model=model, max_steps=max_steps, rank=rank,
                                          learning_rate=learning_rate, cutoff=cutoff))
    for note in download_notes(to_download([config.model]), ctx.downloads):
        yield {"state": "downloading", "download": note}, None
    run_id = launch_run(ctx, config, dataset, prompt_list(prompts), 0, who)
    train_in_slices(ctx, train_slice, run_id)
    status = ctx.runs.wait(run_id)
    while status.state in ACTIVE_STATES:  # a ZeroGPU run's last slice may still be writing
        time.sleep(1.0)
        status = ctx.runs.status(run_id)
    if status.result is None:
        raise BillionError(f"Run {run_id} ended {status.state}: {status.error or 'no adapter was saved'}.")
    yield run_summary(status, ctx.runs.events(run_id)), exported_zip(ctx, status.result)


def run_summary(status: RunStatus, events) -> dict[str, Any]:
    result = status.result
    return {"run_id": status.run_id, "state": status.state, "steps": result.steps,
            "train_losses": [e.loss for e in events if e.kind == "train"],
            "eval_loss_before": result.eval_loss_before, "eval_loss_after": result.eval_loss_after,
            "tokens_per_s": result.tokens_per_s, "train_seconds": result.train_seconds,
            "answers": [{"prompt": a.prompt, "before": a.before, "after": a.after} for a in result.answers]}
