"""Fetching a hub model's files into the Hugging Face cache: the plan, one file, the errors.

Only the files the loader reads are fetched (billion/core/hub_cache.py picks them). Each file goes to
`blobs/<etag>.partial` first and is appended to with an HTTP Range request after an interruption, so
a stopped download resumes where it stopped, in this process or the next. A finished file is checked
against its etag (sha256 for LFS files) before it becomes the blob the snapshot links to.

Files come over HTTP from the hub's resolve URLs (as huggingface_hub fetches them without hf_xet),
through huggingface_hub's session, so HF_HUB_OFFLINE, proxies and HF_ENDPOINT apply. Shared jobs,
progress and cancelling are in billion/core/download_jobs.py.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from billion.core.errors import BillionError
from billion.core.hub_cache import (COMMIT_SHA, LFS_ETAG, content_matches, hub_cache_dir,
                                    needed_files, remember_sha256, repo_folder)

OFFLINE_MODELS = "smollm2-135m, gemma3-270m"
RETRIES = 3


class HubUnreachable(BillionError):
    """The hub did not answer (no network, HF_HUB_OFFLINE, a wrong HF_ENDPOINT)."""


class GatedModel(BillionError):
    """The repo needs an accepted licence and a token of that account."""


class DownloadCancelled(BillionError):
    """Everyone who waited for the download left; its partial files stay for a resume."""


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    #: sha256 of the content for LFS files, git blob sha1 otherwise (the hub's etag, the blob name)
    etag: str


@dataclass(frozen=True)
class DownloadPlan:
    repo_id: str
    #: what was asked for: a branch, a tag or a commit
    revision: str
    #: the commit it resolved to on the hub
    commit: str
    files: tuple[RemoteFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub sees it (it reads it once, at import)."""
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def hub_token() -> str | None:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token
        return get_token()
    except Exception:  # a broken token file must not stop offline use
        return None


def _is_network_error(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"TransportError", "OfflineModeIsEnabled", "ConnectionError", "TimeoutError"})


def explain(repo_id: str, revision: str, exc: BaseException) -> BillionError:
    """A hub error as one line that says what to do."""
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    page = f"{endpoint()}/{repo_id}"
    if isinstance(exc, BillionError):
        return exc
    if isinstance(exc, GatedRepoError) or (isinstance(exc, HfHubHTTPError) and exc.response is not None
                                           and exc.response.status_code == 403):
        if hub_token():
            return GatedModel(f"{repo_id} is gated and the token in HF_TOKEN has no access to it yet: "
                              f"accept its licence at {page} with that account, then try again.")
        return GatedModel(f"{repo_id} is gated and no Hugging Face token is set: accept its licence "
                          f"at {page}, create a read token at {endpoint()}/settings/tokens and set it "
                          "as HF_TOKEN (on a Space: add a secret named HF_TOKEN).")
    if isinstance(exc, RevisionNotFoundError):
        return BillionError(f"{repo_id} has no revision '{revision}' on the hub: pick a branch, tag "
                            f"or commit listed at {page}/commits/main.")
    if isinstance(exc, RepositoryNotFoundError):
        return BillionError(f"{repo_id} was not found on the hub: check the id (a private repo also "
                            "needs HF_TOKEN).")
    if _is_network_error(exc):
        if hub_offline():
            return HubUnreachable(f"{repo_id} at {revision} is not in the Hugging Face cache "
                                  f"({hub_cache_dir()}) and HF_HUB_OFFLINE=1 forbids downloading "
                                  f"it: unset HF_HUB_OFFLINE, or pick an offline model ({OFFLINE_MODELS}).")
        return HubUnreachable(f"The Hugging Face hub ({endpoint()}) is unreachable "
                              f"({type(exc).__name__}) and {repo_id} at {revision} is not in the "
                              f"cache: connect to the internet, or pick an offline model ({OFFLINE_MODELS}).")
    text = " ".join(str(exc).split())[:300]
    return BillionError(f"Downloading {repo_id} failed ({type(exc).__name__}: {text}): run "
                        f"`python -m billion download {repo_id}@{revision}` to resume it.")


def plan_download(repo_id: str, revision: str) -> DownloadPlan:
    """Ask the hub which commit `revision` is and which of its files the loader needs, with sizes
    and etags (one model-info request)."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint(), token=hub_token()).model_info(
            repo_id, revision=revision, files_metadata=True)
    except Exception as exc:  # the hub raises many types; explain() sorts them
        raise explain(repo_id, revision, exc) from exc
    siblings = {s.rfilename: s for s in info.siblings or ()}
    names = needed_files(siblings)
    if not any(n.endswith((".safetensors", ".bin")) for n in names):
        raise BillionError(f"{repo_id} at {revision} has no weights billion can load (model.safetensors "
                           "or pytorch_model.bin): pick another revision or model.")
    files = []
    for name in names:
        sibling = siblings[name]
        etag = sibling.lfs.sha256 if sibling.lfs else sibling.blob_id
        size = sibling.lfs.size if sibling.lfs else sibling.size
        files.append(RemoteFile(name, int(size or 0), str(etag)))
    return DownloadPlan(repo_id, revision, str(info.sha), tuple(files))


def blob_path(repo_id: str, file: RemoteFile) -> Path:
    return repo_folder(repo_id) / "blobs" / file.etag


def partial_path(repo_id: str, file: RemoteFile) -> Path:
    return blob_path(repo_id, file).with_name(file.etag + ".partial")


def bytes_on_disk(repo_id: str, file: RemoteFile) -> int:
    """How much of a file is here already: all of it as a blob, or the partial part."""
    blob = blob_path(repo_id, file)
    if blob.is_file() and blob.stat().st_size == file.size:
        return file.size
    partial = partial_path(repo_id, file)
    return min(partial.stat().st_size, file.size) if partial.is_file() else 0


def human_bytes(n: float) -> str:
    return f"{n / 1e9:,.2f} GB" if n >= 1e9 else f"{n / 1e6:,.1f} MB"


def check_disk_space(plan: DownloadPlan) -> None:
    """Refuse to start when the rest of the download does not fit on the cache's disk."""
    needed = sum(f.size - bytes_on_disk(plan.repo_id, f) for f in plan.files)
    folder = repo_folder(plan.repo_id)
    probe = next(p for p in (folder, *folder.parents) if p.exists())
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise BillionError(f"{plan.repo_id} needs {human_bytes(needed)} more but {probe} has "
                           f"{human_bytes(free)} free: free some space, or set HF_HUB_CACHE to a "
                           "folder on a bigger disk.")


def link_snapshot(plan: DownloadPlan, file: RemoteFile) -> None:
    """snapshots/<commit>/<file> -> ../../blobs/<etag> (relative, as huggingface_hub links it)."""
    pointer = repo_folder(plan.repo_id) / "snapshots" / plan.commit / file.path
    pointer.parent.mkdir(parents=True, exist_ok=True)
    blob = blob_path(plan.repo_id, file)
    target = os.path.relpath(blob, pointer.parent)
    if pointer.is_symlink() and os.readlink(pointer) == target:
        return  # linked already (by another process, maybe being verified right now): leave it
    # Built aside, then renamed over the pointer: another process checking the snapshot meanwhile
    # sees the old entry or the new one, never a missing file.
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        tmp.symlink_to(target)
    except OSError:  # no symlinks (some Windows setups): a copy works the same for loading
        shutil.copyfile(blob, tmp)
    os.replace(tmp, pointer)


def finish_snapshot(plan: DownloadPlan) -> None:
    """Link every planned file into snapshots/<commit>/ and point refs/<revision> at it: only once
    all of them are here, so a stopped download never leaves a snapshot that looks complete."""
    for file in plan.files:
        link_snapshot(plan, file)
    if COMMIT_SHA.fullmatch(plan.revision):
        return
    ref = repo_folder(plan.repo_id) / "refs" / plan.revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    tmp = ref.with_name(f".{ref.name}.{os.getpid()}.tmp")
    tmp.write_text(plan.commit)
    os.replace(tmp, ref)  # readers never see a half-written ref


def _blocks(url: str, start: int, headers: dict) -> Iterator[bytes | None]:
    """The bytes of url from `start` on (a Range request), as they arrive, so progress moves and a
    cancel lands within one network chunk. None first means the server ignored the range: the
    caller starts the file over."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session, hf_raise_for_status

    if start:
        headers = {**headers, "Range": f"bytes={start}-"}
    with get_session().stream("GET", url, headers=headers, follow_redirects=True,
                              timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
        hf_raise_for_status(response)
        if start and response.status_code == 200:
            yield None
        yield from response.iter_bytes()


def _sha256_so_far(path: Path):
    """A sha256 object fed with what is already in `path` (a resumed download continues it)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest


def _receive(partial: Path, url: str, headers: dict, file: RemoteFile,
             on_bytes: Callable[[int], None]) -> str:
    """Append the rest of the file to `partial`, retrying dropped connections from where they
    stopped; returns the sha256 of the whole content, computed as it arrives."""
    partial.touch()
    digest = _sha256_so_far(partial)
    for attempt in range(RETRIES + 1):
        with partial.open("ab") as out:
            try:
                start = out.tell()
                for block in _blocks(url, start, headers):
                    if block is None:  # start over: drop what was here
                        out.seek(0)
                        out.truncate()
                        digest = hashlib.sha256()
                        on_bytes(-start)
                        continue
                    out.write(block)
                    digest.update(block)
                    on_bytes(len(block))
            except BillionError:
                raise
            except Exception as exc:
                if attempt == RETRIES or not _is_network_error(exc):
                    raise
        if partial.stat().st_size >= file.size:
            break
        time.sleep(1.0)
    return digest.hexdigest()


def fetch_file(plan: DownloadPlan, file: RemoteFile, on_bytes: Callable[[int], None]) -> None:
    """Bring one file's blob into the cache, resuming its partial copy; on_bytes gets the size of each
    chunk that arrives (it may raise, e.g. DownloadCancelled, and the partial copy stays)."""
    from filelock import FileLock

    blob = blob_path(plan.repo_id, file)
    locks = hub_cache_dir() / ".locks" / repo_folder(plan.repo_id).name
    locks.mkdir(parents=True, exist_ok=True)
    blob.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{file.etag}.lock")):  # the same lock huggingface_hub takes
        if not (blob.is_file() and blob.stat().st_size == file.size):
            _download_blob(plan, file, on_bytes)


def _download_blob(plan: DownloadPlan, file: RemoteFile, on_bytes: Callable[[int], None]) -> None:
    """HEAD the file (where it lives, its etag), then GET the bytes not here yet into the partial."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    token = hub_token()
    url = hf_hub_url(plan.repo_id, file.path, revision=plan.commit, endpoint=endpoint())
    try:
        meta = get_hf_file_metadata(url, token=token, endpoint=endpoint())
    except Exception as exc:
        raise explain(plan.repo_id, plan.revision, exc) from exc
    if meta.etag and meta.etag != file.etag:
        raise BillionError(f"{file.path} of {plan.repo_id} changed on the hub while downloading: "
                           "start the download again.")
    headers = build_hf_headers(token=token)
    if urlparse(meta.location).netloc != urlparse(url).netloc:
        headers.pop("authorization", None)  # a signed CDN link must not get the token
    partial = partial_path(plan.repo_id, file)
    if partial.is_file() and partial.stat().st_size > file.size:
        partial.unlink()
    try:
        sha256 = _receive(partial, meta.location, headers, file, on_bytes)
    except BillionError:
        raise
    except Exception as exc:
        raise explain(plan.repo_id, plan.revision, exc) from exc
    if partial.stat().st_size != file.size:
        raise BillionError(f"{file.path} of {plan.repo_id} ended after {partial.stat().st_size} of "
                           f"{file.size} bytes: run the download again to resume it.")
    lfs = LFS_ETAG.fullmatch(file.etag)
    if (sha256 != file.etag) if lfs else content_matches(partial, file.etag) == "mismatch":
        partial.unlink(missing_ok=True)
        raise BillionError(f"{file.path} of {plan.repo_id} arrived damaged (its checksum does not "
                           "match the hub's): the copy was removed, try again.")
    blob = blob_path(plan.repo_id, file)
    os.replace(partial, blob)
    remember_sha256(blob, sha256)  # verifying the snapshot later need not read it again
