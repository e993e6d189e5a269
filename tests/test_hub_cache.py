"""Reading the Hugging Face cache: which files the loader needs, where a revision lives, intact or not."""

from __future__ import annotations

import json
import shutil

import pytest

from billion.core.hub_cache import (complete_snapshot, missing_from, needed_files, verify_snapshot,
                                    weight_files)
from billion.core.registry import COMPARED, resolve

TOKENIZER = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


@pytest.mark.parametrize("files, weights", [
    (["model.safetensors", "pytorch_model.bin", "model.onnx", "model.gguf", "consolidated.00.pth"],
     ["model.safetensors"]),
    (["model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors", "model.safetensors.index.json",
      "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin"],
     ["model.safetensors.index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]),
    (["pytorch_model.bin", "flax_model.msgpack", "tf_model.h5"], ["pytorch_model.bin"]),
    (["model.onnx", "model.gguf"], []),
])
def test_one_copy_of_the_weights(files, weights):
    assert weight_files(files) == weights


def test_needed_files_are_config_tokenizer_template_and_weights():
    repo = ["README.md", ".gitattributes", "config.json", "generation_config.json", "model.safetensors",
            "pytorch_model.bin", "onnx/model.onnx", "original/consolidated.00.pth", "chat_template.jinja",
            "tokenizer.model", "LICENSE", "eval_results.json", *TOKENIZER]
    assert needed_files(repo) == sorted(["config.json", "generation_config.json", "model.safetensors",
                                         "chat_template.jinja", "tokenizer.model", *TOKENIZER])


@pytest.mark.parametrize("alias", COMPARED)
def test_every_compared_snapshot_is_complete_and_verified(offline_hub, alias):
    spec = resolve(alias)
    revision = spec.source.revision or "main"
    assert complete_snapshot(spec.hub_id, revision) is not None
    check = verify_snapshot(spec.hub_id, revision)
    assert check.ok and not check.missing
    kinds = {f.path: f.check for f in check.files}
    assert kinds.pop("model.safetensors") == "sha256"  # an LFS file: its etag is its sha256
    assert set(kinds.values()) == {"git-sha1"}  # small files: their etag is the git blob id


def test_branch_and_commit_find_the_same_snapshot(offline_hub):
    spec = resolve("pythia-1b")
    step = (offline_hub / "models--EleutherAI--pythia-1b" / "refs" / "step3000").read_text()
    assert complete_snapshot(spec.hub_id, "step3000") == complete_snapshot(spec.hub_id, step)
    assert complete_snapshot(spec.hub_id, "step5000") is None


@pytest.fixture
def own_copy(hub_cache_dir, tmp_path, monkeypatch):
    """A private copy of the cache (links kept as links) that a test may damage."""
    copy = tmp_path / "cache"
    shutil.copytree(hub_cache_dir, copy, symlinks=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(copy))
    return copy


def test_a_damaged_blob_is_caught(own_copy):
    spec = resolve("tinyllama")
    weights = complete_snapshot(spec.hub_id, spec.source.revision) / "model.safetensors"
    blob = weights.resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, one bit pattern off
    blob.write_bytes(bytes(data))
    check = verify_snapshot(spec.hub_id, spec.source.revision)
    assert not check.ok and [f.path for f in check.files if not f.ok] == ["model.safetensors"]


def test_a_missing_shard_or_broken_link_is_incomplete(own_copy):
    spec = resolve("stablelm")
    folder = complete_snapshot(spec.hub_id, spec.source.revision)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"x")
    assert missing_from(folder) == ["model-00002-of-00002.safetensors"]
    (folder / "tokenizer.json").resolve().unlink()  # the link stays, its blob is gone
    assert "tokenizer (tokenizer.json, tokenizer.model or vocab.json)" in missing_from(folder)
    assert complete_snapshot(spec.hub_id, spec.source.revision) is None
