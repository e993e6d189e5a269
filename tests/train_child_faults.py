"""A training child with a fault injected: `python tests/train_child_faults.py FAULT RUN_DIR ...`.

RunManager(child_prefix=[python, this file, FAULT]) starts it in place of `python -m
billion.train.child`; after the fault is installed it runs that module's very main. Faults:
  oom    the second training step raises torch.OutOfMemoryError (what CUDA raises when a step
         does not fit), so the run trains one real step first
  slow   every training step sleeps 0.5 s (a run that is surely still training when a test kills
         or stops it)
"""

from __future__ import annotations

import sys
import time


def install(fault: str) -> None:
    import torch

    from billion.train.trainer import AnswerOnlyTrainer

    original = AnswerOnlyTrainer.compute_loss
    calls = {"n": 0}

    def compute_loss(self, *args, **kwargs):
        calls["n"] += int(self.model.training)
        if fault == "oom" and self.model.training and calls["n"] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB "
                                         "(injected by tests/train_child_faults.py)")
        if fault == "slow" and self.model.training:
            time.sleep(0.5)
        return original(self, *args, **kwargs)

    AnswerOnlyTrainer.compute_loss = compute_loss


if __name__ == "__main__":
    install(sys.argv[1])
    from billion.train.child import main

    sys.exit(main(sys.argv[2:]))
