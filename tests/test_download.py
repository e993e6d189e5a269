"""Downloading from a hub (a loopback server speaking the hub's API): plan, resume, errors, checks."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from billion.core import download as download_module
from billion.core.download import GatedModel, HubUnreachable, plan_download
from billion.core.download_jobs import download, follow
from billion.core.errors import BillionError
from billion.core.hub_cache import complete_snapshot
from billion.core.loading import load_fresh
from billion.core.registry import COMPARED, resolve

TINYLLAMA = resolve("tinyllama")


def extras_added(hub, alias_repo_id: str) -> dict[str, bytes]:
    """Give a served repo the files a real one also has, which the loader must not fetch."""
    repo = hub.repos[alias_repo_id]
    extra = {"pytorch_model.bin": b"pickled copy", "model.onnx": b"onnx", "model.gguf": b"gguf",
             "original/consolidated.00.pth": b"pth", "README.md": b"# card", ".gitattributes": b"*.bin lfs",
             "tokenizer.model": b"sentencepiece model"}
    hub.repos[alias_repo_id] = dataclasses.replace(repo, files={**repo.files, **extra})
    return extra


def fetched(hub) -> list[str]:
    return [path.rsplit("/", 1)[-1] for method, path, _ in hub.requests if method == "GET" and "/resolve/" in path]


def test_only_the_files_the_loader_reads_are_fetched(online_hub):
    extras_added(online_hub, TINYLLAMA.hub_id)
    plan = plan_download(TINYLLAMA.hub_id, TINYLLAMA.source.revision)
    assert plan.commit == TINYLLAMA.source.revision
    assert [f.path for f in plan.files] == ["config.json", "generation_config.json", "model.safetensors",
                                            "special_tokens_map.json", "tokenizer.json", "tokenizer.model",
                                            "tokenizer_config.json"]
    outcome = download(TINYLLAMA, poll_s=0.05)
    assert outcome.check.ok and not outcome.note
    assert sorted(fetched(online_hub)) == sorted(f.path for f in plan.files)


def test_a_downloaded_model_loads_and_is_verified(online_hub):
    outcome = download(TINYLLAMA, poll_s=0.05)
    assert {f.check for f in outcome.check.files} == {"sha256", "git-sha1"}
    assert outcome.check.commit == TINYLLAMA.source.revision
    loaded = load_fresh(TINYLLAMA)
    assert loaded.revision == TINYLLAMA.source.revision
    # A second run asks the hub, finds every blob in place and fetches nothing.
    before = len(fetched(online_hub))
    assert download(TINYLLAMA, poll_s=0.05).check.ok and len(fetched(online_hub)) == before


def test_a_damaged_file_is_fetched_again(online_hub):
    assert download(TINYLLAMA, poll_s=0.05).check.ok
    weights = complete_snapshot(TINYLLAMA.hub_id, TINYLLAMA.source.revision) / "model.safetensors"
    blob = weights.resolve()
    blob.write_bytes(bytes(b ^ 0xFF for b in blob.read_bytes()))  # same size, wrong content
    outcome = download(TINYLLAMA, poll_s=0.05)
    assert outcome.check.ok and fetched(online_hub).count("model.safetensors") == 2


def test_an_interrupted_download_resumes_with_a_range_request(online_hub):
    online_hub.rate_bytes_s = 60_000
    progress = follow(TINYLLAMA, poll_s=0.05)
    for update in progress:
        weights = next(f for f in update.files if f.path == "model.safetensors")
        if weights.done_bytes > 20_000:
            break
    progress.close()  # the only follower leaves: the job stops, its partial file stays
    partials = list(download_module.repo_folder(TINYLLAMA.hub_id).glob("blobs/*.partial"))
    assert len(partials) == 1
    online_hub.rate_bytes_s = None
    online_hub.requests.clear()
    outcome = download(TINYLLAMA, poll_s=0.05)
    assert outcome.check.ok
    kept = int(next(r for m, p, r in online_hub.requests if p.endswith("model.safetensors") and m == "GET")
               .removeprefix("bytes=").rstrip("-"))
    assert kept >= 20_000 and not list(download_module.repo_folder(TINYLLAMA.hub_id).glob("blobs/*.partial"))


def test_a_gated_model_without_token_says_where_to_accept_and_what_to_set(online_hub, monkeypatch):
    spec = resolve("llama3.2-1b")
    with pytest.raises(GatedModel) as caught:
        download(spec)
    message = str(caught.value)
    assert "HF_TOKEN" in message and f"{online_hub.url}/meta-llama/Llama-3.2-1B-Instruct" in message
    assert "\n" not in message
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")  # the loopback hub accepts any token
    assert download(spec, poll_s=0.05).check.ok


def test_a_revision_the_hub_does_not_have(online_hub):
    with pytest.raises(BillionError, match=r"no revision 'step5000' on the hub"):
        download(resolve("pythia-1b@step5000"))
    outcome = download(resolve("pythia-1b@step3000"), poll_s=0.05)
    assert outcome.check.ok and [f.path for f in outcome.check.files if f.path.endswith(".bin")] == [
        "pytorch_model.bin"]


def test_disk_space_is_checked_before_any_file_is_fetched(online_hub, monkeypatch):
    real = shutil.disk_usage(".")
    monkeypatch.setattr(download_module.shutil, "disk_usage",
                        lambda path: real._replace(free=1000))  # a full disk is not cheap to make
    with pytest.raises(BillionError, match=r"needs 0\.2 MB more .* has 0\.0 MB free.*HF_HUB_CACHE"):
        download(TINYLLAMA)
    assert fetched(online_hub) == [] and complete_snapshot(TINYLLAMA.hub_id, "main") is None


def test_an_unreachable_hub_is_one_line(online_hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(HubUnreachable) as caught:
        download(TINYLLAMA)
    assert "unreachable" in str(caught.value) and "\n" not in str(caught.value)


def test_pinned_revisions_are_what_download_and_load_ask_for(online_hub, monkeypatch):
    """main moves on after the pin: every request names the registry's commit, never main."""
    monkeypatch.setenv("HF_TOKEN", "hf_test")  # two of the four are gated
    moved = "9" * 40
    for alias in COMPARED:
        spec = resolve(alias)
        repo = online_hub.repos[spec.hub_id]
        online_hub.repos[spec.hub_id] = dataclasses.replace(
            repo, refs={**repo.refs, "main": moved}, others={**repo.others, moved: {**repo.files, "x.txt": b"x"}})
    assert load_fresh(TINYLLAMA).revision == TINYLLAMA.source.revision  # the loader downloads it
    for alias in COMPARED:
        assert download(resolve(alias), poll_s=0.05).check.commit == resolve(alias).source.revision
    for alias in COMPARED:
        spec = resolve(alias)
        asked = [path for _, path, _ in online_hub.requests if spec.hub_id in path]
        assert asked and all(f"/{spec.source.revision}" in path for path in asked), asked


def test_xet_backed_files_still_come_over_http_with_byte_progress(online_hub):
    """The hub marks the weights as Xet-backed and hf_xet is installed (huggingface_hub 2.4 needs it):
    billion's fetcher still GETs the resolve URL, so the file's progress counts bytes as they arrive
    (docs/downloads.md, "hf_xet")."""
    from huggingface_hub.utils._runtime import is_xet_available

    assert is_xet_available(), "hf_xet is pinned in requirements.txt"
    online_hub.xet, online_hub.rate_bytes_s = True, 400_000
    seen = []
    assert download(TINYLLAMA, on_progress=seen.append, poll_s=0.05).check.ok
    size = len(online_hub.repos[TINYLLAMA.hub_id].files["model.safetensors"])
    weights = [f.done_bytes for p in seen for f in p.files if f.path == "model.safetensors"]
    assert any(0 < done < size for done in weights), weights  # bytes counted mid-file
    assert not [path for _, path, _ in online_hub.requests if "xet" in path]


def test_relinking_a_snapshot_never_leaves_a_file_missing(tmp_path, monkeypatch):
    """A second process finishing the same snapshot must not unlink what the first is verifying:
    a correct link is left alone (same inode), a wrong one is replaced by a rename, never removed."""
    from billion.core.download import DownloadPlan, RemoteFile, blob_path, link_snapshot
    from billion.core.hub_cache import repo_folder

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    file = RemoteFile("config.json", 2, "a" * 40)
    plan = DownloadPlan("org/name", "main", "c" * 40, (file,))
    blob = blob_path(plan.repo_id, file)
    blob.parent.mkdir(parents=True)
    blob.write_text("{}")
    pointer = repo_folder(plan.repo_id) / "snapshots" / plan.commit / "config.json"
    link_snapshot(plan, file)
    touched = []
    with monkeypatch.context() as patch:  # already right: nothing is removed or renamed
        patch.setattr(type(pointer), "unlink", lambda self, *a, **k: touched.append(("unlink", self.name)))
        patch.setattr(download_module.os, "replace", lambda *a: touched.append(("replace", a)))
        link_snapshot(plan, file)
    assert touched == [] and pointer.read_text() == "{}"
    pointer.unlink()
    pointer.symlink_to("elsewhere")  # wrong: replaced in one rename
    link_snapshot(plan, file)
    assert pointer.read_text() == "{}"
    assert [p.name for p in pointer.parent.iterdir()] == ["config.json"]  # no temporary left
