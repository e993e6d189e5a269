"""Copies of voted arena battles outside the store, and restoring a new store from them.

The local store stays the record of truth; a copy appends each voted battle (the store's
battle_record) as one JSON line, through the store's on-vote hook (billion.context wires them):

- `HubSync`: a folder that a huggingface_hub CommitScheduler uploads to a dataset repo every few
  minutes (files under `battles/` in the repo). A Space's own disk is wiped at every restart, so
  on a free Space this copy is the only one that survives.
- `FolderCopy`: a local folder laid out as that repo is (`battles/*.jsonl`), written at once;
  tests and machines without the Hub use it in the dataset's place.

At start-up, a store without votes is refilled from its copy (`restore_votes`): by battle id, so
restoring twice adds nothing.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: the repo folder votes go to (and are read back from)
REPO_FOLDER = "battles"


class VoteCopy(Protocol):
    """Where voted battles are copied; what a restore reads back."""

    #: for people: "the dataset org/name", "the folder /x"
    where: str
    #: minutes between uploads (0: written at once)
    every_minutes: float

    def append(self, record: Mapping[str, Any]) -> None: ...

    def records(self) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


def _write_line(file: Path, record: Mapping[str, Any]) -> None:
    with file.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def read_records(files: list[Path]) -> Iterator[dict[str, Any]]:
    """Each JSON object line of the files; a torn or foreign line is skipped with a warning."""
    for file in sorted(files):
        with file.open(encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    log.warning("%s line %d is not JSON (a write cut short?): skipped", file.name, number)
                    continue
                if isinstance(record, dict) and record.get("id"):
                    yield record


@dataclass
class FolderCopy:
    """A local folder in the dataset repo's layout; each vote is appended (and flushed) at once."""

    folder: Path
    every_minutes: float = 0.0

    def __post_init__(self) -> None:
        (self.folder / REPO_FOLDER).mkdir(parents=True, exist_ok=True)
        # One file per process, so two apps on one folder never interleave lines.
        self.file = self.folder / REPO_FOLDER / f"battles-{uuid.uuid4().hex}.jsonl"

    @property
    def where(self) -> str:
        return f"the folder {self.folder}"

    def append(self, record: Mapping[str, Any]) -> None:
        _write_line(self.file, record)

    def records(self) -> Iterator[dict[str, Any]]:
        return read_records(list((self.folder / REPO_FOLDER).glob("*.jsonl")))

    def close(self) -> None:
        pass


@dataclass
class HubSync:
    """Appends voted battles as JSONL to a folder that a huggingface_hub.CommitScheduler uploads."""

    scheduler: Any
    file: Path
    repo_id: str = ""
    every_minutes: float = 5.0
    token: str | None = None

    @property
    def where(self) -> str:
        return f"the dataset {self.repo_id}"

    def append(self, record: Mapping[str, Any]) -> None:
        # The scheduler's lock keeps an upload from reading a half-written line.
        with self.scheduler.lock:
            _write_line(self.file, record)

    def records(self) -> Iterator[dict[str, Any]]:
        """What the dataset holds (downloaded), then what this folder has not uploaded yet."""
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(self.repo_id, repo_type="dataset", token=self.token,
                                        allow_patterns=[f"{REPO_FOLDER}/*.jsonl"]))
        files = list((folder / REPO_FOLDER).glob("*.jsonl")) + list(self.file.parent.glob("*.jsonl"))
        return read_records(files)

    def close(self) -> None:
        self.scheduler.stop()  # what is queued is pushed now, or at the next start


def is_folder_target(target: str) -> bool:
    """An absolute folder (or file:// URL) stands in for a dataset repo id like "org/name"."""
    return target.startswith("file://") or Path(target).is_absolute()


def start_vote_copy(target: str | None, folder: Path, token: str | None = None,
                    every_minutes: float = 5.0) -> VoteCopy | None:
    """The copy settings.hub_dataset names: a folder for an absolute path, else a dataset repo
    (see start_hub_sync); None when off or when the Hub copy cannot start."""
    if not target:
        return None
    if is_folder_target(target):
        return FolderCopy(Path(target.removeprefix("file://")))
    return start_hub_sync(target, folder, token, every_minutes)


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
                                    path_in_repo=REPO_FOLDER, every=every_minutes, token=token,
                                    private=True)
    except Exception as exc:  # network, auth: the app must keep running and keep votes locally
        warnings.warn(f"Hub sync to {repo_id} not started ({exc}); votes stay in the local store.")
        return None
    # One file per process, so replicas never write the same file.
    return HubSync(scheduler, folder / f"battles-{uuid.uuid4().hex}.jsonl", repo_id, every_minutes, token)


def restore_votes(store, copy: VoteCopy) -> int:
    """Add the copy's voted battles that the store lacks (by id); returns how many were added.

    A copy that cannot be read (the Hub is down) warns and adds nothing: the app starts anyway.
    """
    try:
        return store.import_battles(copy.records())
    except Exception as exc:
        warnings.warn(f"Votes could not be restored from {copy.where} ({exc}); starting without them.")
        return 0


def durability_note(*, on_space: bool, store_path: Path, persistent: bool, copy: VoteCopy | None,
                    backup: Path | None, backup_minutes: float) -> str:
    """One sentence for the page: where the votes live and what survives a restart."""
    if persistent:
        where = f"Votes are kept on persistent storage ({store_path.parent})"
    elif on_space:
        where = "Votes are kept on this Space's disk only: lost at restart"
    else:
        where = f"Votes are kept on this machine's disk ({store_path})"
    copies = []
    if backup is not None:
        copies.append(f"the store is copied to {backup} every {backup_minutes:g} minutes")
    if copy is not None:
        every = f"every {copy.every_minutes:g} minutes" if copy.every_minutes else "as each vote is cast"
        copies.append(f"each vote is copied to {copy.where} {every}, and a new store is restored from it")
    if not copies:
        return where + "."
    if where.endswith("lost at restart"):
        where = "Votes are kept on this Space's disk (lost at restart)"
    return f"{where}; " + "; ".join(copies) + "."
