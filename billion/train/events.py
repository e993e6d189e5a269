"""Training progress: events a UI polls from another thread (billion.train.trainer emits them)."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal


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
