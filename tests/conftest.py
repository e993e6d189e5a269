"""Shared fixtures: tiny random models built here, the offline SmolLM2 when it is installed, and
app contexts (billion.context) on throwaway folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Tests never reach for the hub; offline is a normal state for billion.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Votes, results and runs written by tests go to a throwaway folder, never the repo's data/.
if "BILLION_DATA_DIR" not in os.environ:
    import tempfile

    os.environ["BILLION_DATA_DIR"] = tempfile.mkdtemp(prefix="billion-test-data-")
    os.environ.pop("BILLION_DB", None)

from tiny_models import build_tokenizer, save_tiny, tiny_llama, tiny_neox  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def llama(tokenizer):
    return tiny_llama(len(tokenizer))


@pytest.fixture(scope="session")
def neox(tokenizer):
    return tiny_neox(len(tokenizer))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny Llama saved as a local model directory (loadable by path)."""
    return save_tiny(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="session")
def models():
    """One model cache for the whole run: each tiny model loads once, as in a running app."""
    from billion.core.loading import ModelCache
    from billion.core.settings import default_model_budget

    return ModelCache(default_model_budget())


@pytest.fixture
def ctx(tmp_path, models):
    """An app context of its own: store, runs and exports under tmp_path, the session's models."""
    from billion.context import build_context
    from billion.core.settings import Settings

    context = build_context(Settings.in_folder(tmp_path / "billion-data"), models=models)
    yield context
    context.store.close()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a shared 2-core machine they lose a lot.

    Opt in per module with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def hub_repos():
    """Tiny repos in the four compared models' architectures and real chat templates (hub_repos.py)."""
    from hub_repos import build_repos

    return build_repos()


@pytest.fixture(scope="session")
def hub_cache_dir(hub_repos, tmp_path_factory) -> Path:
    """Those repos in a Hugging Face cache (models--ORG--NAME/{blobs,snapshots,refs}), built once."""
    from hub_repos import write_cache

    return write_cache(tmp_path_factory.mktemp("hf-cache"), hub_repos)


@pytest.fixture
def offline_hub(hub_cache_dir, monkeypatch) -> Path:
    """HF_HUB_CACHE at the tiny repos' cache, offline: hub ids resolve exactly as on a Space."""
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache_dir


@pytest.fixture
def online_hub(hub_repos, tmp_path, monkeypatch):
    """A loopback hub serving the tiny repos (tests/fake_hub.py): HF_ENDPOINT at it, online, an empty
    cache, and no token anywhere."""
    from fake_hub import FakeHub
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # read once at import; tests run offline
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with FakeHub(hub_repos) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


@pytest.fixture(scope="session")
def transformers_serve(tmp_path_factory):
    """`transformers serve` running the offline SmolLM2 on a loopback port: one per test session
    (tests/endpoint_servers.py). Use `served_smollm`, which starts it again after a test killed it."""
    from transformers.utils.import_utils import is_serve_available

    from billion.core.registry import resolve
    from billion.core.weights import missing_packages
    from endpoint_servers import TransformersServe, smollm_folder

    if missing_packages(resolve("smollm2-135m")) or not is_serve_available():
        pytest.skip("needs the offline SmolLM2 and transformers[serving] (requirements-dev.txt)")
    server = TransformersServe(smollm_folder(), tmp_path_factory.mktemp("serve") / "serve.log")
    yield server.start()
    server.stop()


@pytest.fixture
def served_smollm(transformers_serve):
    return transformers_serve.ensure_running()
