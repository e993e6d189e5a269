"""Training progress: events a UI polls from another thread, and the callback that emits them.

The callback also stops training cleanly at the next step, when asked or when a time slice ends.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

from transformers import TrainerCallback

@dataclass(frozen=True)
class AnswerPair:
    """One held-out prompt answered by the base model (adapter off) and the tuned one."""

    prompt: str
    before: str
    after: str


EventKind = Literal["status", "probe", "train", "eval", "answer", "done", "stopped", "error"]


@dataclass(frozen=True)
class TrainEvent:
    """One progress report; a UI polls the list of these and draws curves from them."""

    kind: EventKind
    step: int = 0
    max_steps: int = 0
    epoch: float = 0.0
    loss: float | None = None
    eval_loss: float | None = None
    learning_rate: float | None = None
    #: non-padding training tokens per second of training (evaluation time excluded)
    tokens_per_s: float | None = None
    #: seconds left at the current pace
    eta_s: float | None = None
    elapsed_s: float = 0.0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EventLog:
    """An append-only, thread-safe list of events; readers ask for the ones after an index."""

    def __init__(self, sink=None):
        self._events: list[TrainEvent] = []
        self._lock = threading.Lock()
        #: called with each event (e.g. to append it to the run's events.jsonl)
        self._sink = sink

    def append(self, event: TrainEvent) -> None:
        with self._lock:
            self._events.append(event)
            if self._sink is not None:
                self._sink(event)

    def since(self, index: int = 0) -> tuple[TrainEvent, ...]:
        with self._lock:
            return tuple(self._events[index:])

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


class ProgressCallback(TrainerCallback):
    """Streams train/eval events; stops at the next step when asked or when a deadline nears."""

    def __init__(self, events: EventLog, stop: threading.Event | None = None,
                 deadline: float | None = None, elapsed_before: float = 0.0):
        self.events = events
        self.stop = stop
        #: time.monotonic() by which the slice must have saved its checkpoint
        self.deadline = deadline
        self.elapsed_before = elapsed_before
        self.train_seconds = 0.0
        self.steps_timed = 0
        self.tokens_at_start = 0
        self._step_started = 0.0
        self._started = 0.0
        self.stopped_early = False

    @property
    def step_seconds(self) -> float | None:
        return self.train_seconds / self.steps_timed if self.steps_timed else None

    def on_train_begin(self, args, state, control, **kwargs):
        self._started = time.monotonic()
        self.tokens_at_start = state.num_input_tokens_seen

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self.train_seconds += time.monotonic() - self._step_started
        self.steps_timed += 1
        finishing = state.global_step >= state.max_steps
        late = self.deadline is not None and time.monotonic() + 2 * (self.step_seconds or 0) > self.deadline
        if not finishing and ((self.stop is not None and self.stop.is_set()) or late):
            control.should_training_stop = True
            control.should_save = True
            self.stopped_early = True

    def tokens_per_s(self, state) -> float | None:
        tokens = state.num_input_tokens_seen - self.tokens_at_start
        return tokens / self.train_seconds if self.train_seconds > 0 and tokens else None

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        elapsed = self.elapsed_before + time.monotonic() - self._started
        common = dict(step=state.global_step, max_steps=state.max_steps, epoch=float(state.epoch or 0),
                      elapsed_s=elapsed)
        if "loss" in logs:
            left = state.max_steps - state.global_step
            eta = left * self.step_seconds if self.step_seconds else None
            self.events.append(TrainEvent("train", loss=float(logs["loss"]),
                                          learning_rate=float(logs.get("learning_rate", 0.0)),
                                          tokens_per_s=self.tokens_per_s(state), eta_s=eta, **common))
        if "eval_loss" in logs:
            self.events.append(TrainEvent("eval", eval_loss=float(logs["eval_loss"]), **common))
