"""The Hugging Face cache on disk: where a repo's snapshot lives, which of its files the loader needs,
and whether those files are intact. No network here (billion/core/download.py fetches).

The layout is the hub's own (`huggingface_hub` reads and writes the same folders):
`<cache>/models--ORG--NAME/refs/<branch>` holds a commit, `snapshots/<commit>/<file>` links to
`blobs/<etag>`, and a file's etag is the sha256 of its content for LFS files and the git blob sha1
for small files, so the cache can be checked without the hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from billion.core.registry import COMMIT_SHA

LFS_ETAG = re.compile(r"[0-9a-f]{64}")
CONFIG_FILES = frozenset({"config.json", "generation_config.json"})
# Every file a tokenizer or its chat template may be read from (all small).
TOKENIZER_FILES = frozenset({"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "added_tokens.json", "tokenizer.model", "vocab.json", "merges.txt",
                             "chat_template.jinja", "chat_template.json"})
_SHARD = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
_BIN_SHARD = re.compile(r"pytorch_model-\d{5}-of-\d{5}\.bin")


def hub_cache_dir() -> Path:
    """The hub cache, read from the environment at call time (huggingface_hub reads it at import)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expandvars(os.environ[name])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str) -> Path:
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def weight_files(names: Iterable[str]) -> list[str]:
    """One copy of the weights, as from_pretrained picks it: safetensors (single or sharded with its
    index) when present, else PyTorch .bin. Never .pth, ONNX, GGUF, Flax or TF copies."""
    top = set(names)
    for single, shard, index in (("model.safetensors", _SHARD, "model.safetensors.index.json"),
                                 ("pytorch_model.bin", _BIN_SHARD, "pytorch_model.bin.index.json")):
        if single in top:
            return [single]
        shards = sorted(n for n in top if shard.fullmatch(n))
        if shards:
            return ([index] if index in top else []) + shards
    return []


def needed_files(names: Iterable[str]) -> list[str]:
    """Of a repo's files, those the loader reads: config, generation config, tokenizer files, chat
    template and one copy of the weights (top-level files only, like from_pretrained)."""
    top = {n for n in names if "/" not in n}
    return sorted((top & (CONFIG_FILES | TOKENIZER_FILES)) | set(weight_files(top)))


def commit_for(repo_id: str, revision: str) -> str | None:
    """The commit a revision points at in the cache: itself if it is a commit, else refs/<revision>."""
    if COMMIT_SHA.fullmatch(revision):
        return revision
    ref = repo_folder(repo_id) / "refs" / revision
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


def snapshot_folder(repo_id: str, revision: str) -> Path | None:
    commit = commit_for(repo_id, revision)
    folder = repo_folder(repo_id) / "snapshots" / commit if commit else None
    return folder if folder is not None and folder.is_dir() else None


def missing_from(folder: Path) -> list[str]:
    """What the loader would miss in a snapshot folder: config, weights (every shard the index
    names) or a tokenizer. Broken links count as missing."""
    present = {p.name for p in folder.iterdir() if p.exists()}
    missing = [] if "config.json" in present else ["config.json"]
    weights = weight_files(present)
    if not weights:
        missing.append("model weights (model.safetensors or pytorch_model.bin)")
    index = next((w for w in weights if w.endswith(".index.json")), None)
    if index:
        try:
            shards = set(json.loads((folder / index).read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError):
            shards = {f"{index} (unreadable)"}
        missing += sorted(shards - present)
    if not present & {"tokenizer.json", "tokenizer.model", "vocab.json"}:
        missing.append("tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
    return missing


def complete_snapshot(repo_id: str, revision: str) -> Path | None:
    """The cached snapshot folder if it holds everything the loader needs, else None."""
    folder = snapshot_folder(repo_id, revision)
    return folder if folder is not None and not missing_from(folder) else None


def snapshot_bytes(repo_id: str, revision: str) -> int:
    """Disk size of what the loader reads from a cached snapshot (0 when it is not cached)."""
    folder = complete_snapshot(repo_id, revision)
    if folder is None:
        return 0
    return sum((folder / n).stat().st_size for n in needed_files(p.name for p in folder.iterdir()))


def cached_revisions(repo_id: str) -> list[str]:
    """Branches and commits present in the cache (for messages about a missing revision)."""
    storage = repo_folder(repo_id)
    refs = sorted(p.name for p in (storage / "refs").glob("*") if p.is_file())
    snapshots = sorted(p.name[:12] for p in (storage / "snapshots").glob("*") if p.is_dir())
    return refs + [s for s in snapshots if s not in refs]


# ---- verification -------------------------------------------------------------------------------

Check = Literal["sha256", "git-sha1", "size", "missing", "mismatch"]


@dataclass(frozen=True)
class FileCheck:
    path: str
    size: int
    #: what was compared: the LFS sha256, the git blob sha1, the size only; or why it failed
    check: Check

    @property
    def ok(self) -> bool:
        return self.check not in ("missing", "mismatch")


@dataclass(frozen=True)
class SnapshotCheck:
    repo_id: str
    revision: str
    commit: str | None
    folder: Path | None
    files: tuple[FileCheck, ...]
    #: what the loader needs but the snapshot lacks
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.folder is not None and not self.missing and all(f.ok for f in self.files)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def git_blob_sha1(path: Path) -> str:
    """The id git (and the hub, as the etag of a non-LFS file) gives a file's content."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


_sha256_memo: dict[tuple[str, int, int], str] = {}


def _memo_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return os.path.realpath(path), stat.st_size, stat.st_mtime_ns


def remember_sha256(path: Path, digest: str) -> None:
    """Record a digest computed while the file arrived, so checking it costs no second read."""
    _sha256_memo[_memo_key(path)] = digest


def sha256_of(path: Path) -> str:
    """The file's sha256 (remembered per real path, size and mtime: weights are gigabytes)."""
    key = _memo_key(path)
    if key not in _sha256_memo:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
        _sha256_memo[key] = digest.hexdigest()
    return _sha256_memo[key]


def content_matches(path: Path, etag: str) -> Check:
    """Compare a file with the etag it was stored under: sha256 for LFS, git sha1 otherwise."""
    if LFS_ETAG.fullmatch(etag):
        return "sha256" if sha256_of(path) == etag else "mismatch"
    if COMMIT_SHA.fullmatch(etag):
        return "git-sha1" if git_blob_sha1(path) == etag else "mismatch"
    return "size"


def check_file(folder: Path, name: str, expected: tuple[int, str] | None = None) -> FileCheck:
    """One snapshot file against its blob name (the etag) and, if given, the hub's (size, etag)."""
    path = folder / name
    if not path.exists():
        return FileCheck(name, 0, "missing")
    size = path.stat().st_size
    etag = Path(os.path.realpath(path)).name if path.is_symlink() else ""
    if expected is not None:
        want_size, want_etag = expected
        if size != want_size or (etag and etag != want_etag):
            return FileCheck(name, size, "mismatch")
        etag = want_etag
    return FileCheck(name, size, content_matches(path, etag) if etag else "size")


def verify_snapshot(repo_id: str, revision: str,
                    expected: dict[str, tuple[int, str]] | None = None) -> SnapshotCheck:
    """Check a cached snapshot: every file the loader needs is there and matches its etag (and the
    hub's size and etag when `expected` comes from a download plan)."""
    commit = commit_for(repo_id, revision)
    folder = snapshot_folder(repo_id, revision)
    if folder is None:
        return SnapshotCheck(repo_id, revision, commit, None, (), ("snapshot",))
    names = sorted(expected) if expected else needed_files(p.name for p in folder.iterdir())
    files = tuple(check_file(folder, n, expected.get(n) if expected else None) for n in names)
    missing = tuple(missing_from(folder)) + tuple(f.path for f in files if f.check == "missing")
    return SnapshotCheck(repo_id, revision, commit, folder, files, tuple(dict.fromkeys(missing)))
