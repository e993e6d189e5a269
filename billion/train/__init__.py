"""LoRA fine-tuning: datasets, tokenisation and masking, training sessions, and background runs.

TrainConfig is the request the UI and the CLI fill; RunManager checks it against the limits and
trains it in a process of its own (billion.train.child), followed through the run folder.
"""

from billion.core.exports import public_api

__all__, __getattr__, __dir__ = public_api(__name__, {
    "billion.train.config": ("TrainConfig",),
    "billion.train.data": ("TrainDataset", "load_dataset"),
    "billion.train.events": ("TrainEvent",),
    "billion.train.manager": ("RunManager",),
    "billion.train.runs": ("RunStatus", "TrainResult", "train_slice"),
    "billion.train.session": ("TrainingSession",),
})
