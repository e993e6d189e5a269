"""LoRA fine-tuning: datasets, tokenisation and masking, training sessions, and background runs.

TrainConfig is the request the UI and the CLI fill; RunManager runs it in the background.
"""

from billion.core.exports import public_api

__all__, __getattr__, __dir__ = public_api(__name__, {
    "billion.train.config": ("TrainConfig",),
    "billion.train.data": ("TrainDataset", "load_dataset"),
    "billion.train.events": ("TrainEvent",),
    "billion.train.runs": ("RunManager", "RunStatus", "TrainResult", "train_slice"),
    "billion.train.session": ("TrainingSession",),
})
