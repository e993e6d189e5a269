"""Optional copy of voted arena battles to a Hugging Face dataset repo (a CommitScheduler upload).

The local store stays the record of truth; this only appends each voted battle as a JSONL line to a
folder that huggingface_hub uploads every few minutes. The store calls `HubSync.append` through its
on-vote hook (billion.context wires them), so the store itself knows nothing of the arena or the hub.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class HubSync:
    """Appends voted battles as JSONL to a folder that a huggingface_hub.CommitScheduler uploads."""

    scheduler: Any
    file: Path

    def append(self, record: Mapping[str, Any]) -> None:
        # The scheduler's lock keeps an upload from reading a half-written line.
        with self.scheduler.lock:
            with self.file.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def start_hub_sync(repo_id: str | None, folder: Path, token: str | None = None,
                   every_minutes: float = 5.0) -> HubSync | None:
    """Start uploading votes from `folder` to a dataset repo; None unless a repo and a token are given.

    The token defaults to env HF_TOKEN. The local store stays the record of truth: if the Hub
    cannot be reached this warns and returns None instead of failing the app.
    """
    token = token or os.environ.get("HF_TOKEN")
    if not repo_id or not token:
        return None
    from huggingface_hub import CommitScheduler

    folder.mkdir(parents=True, exist_ok=True)
    try:
        scheduler = CommitScheduler(repo_id=repo_id, repo_type="dataset", folder_path=folder,
                                    path_in_repo="battles", every=every_minutes, token=token,
                                    private=True)
    except Exception as exc:  # network, auth: the app must keep running and keep votes locally
        warnings.warn(f"Hub sync to {repo_id} not started ({exc}); votes stay in the local store.")
        return None
    # One file per process, so replicas never write the same file.
    return HubSync(scheduler, folder / f"battles-{uuid.uuid4().hex}.jsonl")
