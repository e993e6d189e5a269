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
    """Tiny models gain nothing from threads, and on a shared 2-core machine they lose a lot: while
    another process holds a core, a step split over two threads waits for the one not running
    (SmolLM2 at int8: ~1 token/s on two threads against ~40 on one). This process runs one torch
    thread, and so do the processes it starts meanwhile (OMP_NUM_THREADS: training children,
    `transformers serve`).

    Opt in per module with `pytestmark = pytest.mark.usefixtures("one_thread")`.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["in-process",
                        # ~10 s a test in fresh processes; the [in-process] case runs the same commands
                        # in every run, and test_cli.py::test_models_lists_every_entry_with_availability
                        # starts `python -m billion` itself
                        pytest.param("subprocess", marks=pytest.mark.slow)])
def cli(request):
    """Run `python -m billion ARGS`: CompletedProcess(returncode, stdout, stderr). In-process
    (billion.cli.main, as billion/__main__.py calls it) in the default run; in a fresh process with
    -m slow."""
    from test_cli import run_cli, run_cli_here

    return run_cli_here if request.param == "in-process" else run_cli


@pytest.fixture(scope="session")
def app_url(models):
    """The whole app served from this process (tests/app_server.py) on the environment's data
    folder with the session's models: one launch for the modules that call its endpoints or read
    its page (test_app.py, test_app_race.py, test_app_page.py, test_recommended.py,
    test_app_trainer.py)."""
    from app_server import serve_app

    with serve_app(models=models) as url:
        yield url


@pytest.fixture(scope="session")
def app_process(tmp_path_factory, request):
    """One real `python app.py` (tests/app_process.py) for the modules that need the process itself:
    test_browser.py clicks through it, test_paths_security.py tries its real allowed_paths. Its data
    folder and Gradio upload folder are fresh temporary folders; .url, .data, .uploads. Where a
    selected test battles the offline SmolLM2 behind `transformers serve` from the page, its
    models.yaml declares that server (alias smollm2-served)."""
    from types import SimpleNamespace

    from app_process import start_app

    root = tmp_path_factory.mktemp("app-process")
    data, uploads = root / "data", root / "gradio-uploads"
    data.mkdir()
    uploads.mkdir()
    # One torch thread, as conftest.py's one_thread gives the in-process apps: the page's tests
    # wait on SmolLM2's answers, which two threads slow down many times while another process
    # holds a core.
    env = {"GRADIO_TEMP_DIR": str(uploads), "OMP_NUM_THREADS": "1"}
    if any(item.get_closest_marker("browser") and "served_smollm" in getattr(item, "fixturenames", ())
           for item in request.session.items):
        try:
            served = request.getfixturevalue("transformers_serve")
            (data / "models.yaml").write_text(
                f"models:\n  - alias: smollm2-served\n    base_url: {served.base_url}\n"
                f"    model: {served.model}\n")
            env["BILLION_MODELS_FILE"] = str(data / "models.yaml")
        except pytest.skip.Exception:
            pass
    # A separate process, as a person runs it: served from inside the test process, the page's
    # polling and the training thread fight over one interpreter and training runs ~3x slower.
    app = start_app(data, budget_gb=8, env=env)
    try:
        yield SimpleNamespace(url=app.url, data=data, uploads=uploads)
    finally:
        app.stop()


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


def pytest_collection_modifyitems(config, items):
    """Tests marked kills_served_smollm SIGKILL the session's `transformers serve`: they run after
    every other test, so the server starts once a run (a restart costs ~10-20 s on 2 shared cores:
    the start, then the model's load at its first request)."""
    last = [item for item in items if item.get_closest_marker("kills_served_smollm")]
    if last:
        items[:] = [item for item in items if item not in last] + last


@pytest.fixture(scope="session")
def long_rows_file(tmp_path_factory):
    """Issue 13 finding 1's data: 24 rows of ~2,300 words each."""
    import json

    words = ("the quick brown fox jumps over the lazy dog while " * 230).split()
    path = tmp_path_factory.mktemp("long-rows") / "long.jsonl"
    path.write_text("".join(json.dumps({"instruction": f"Retell story {i}.", "output": " ".join(words)}) + "\n"
                            for i in range(24)))
    return path


# Two answers the tiny random model can memorise in a few steps at a high learning rate.
TRAIN_ROWS = [{"instruction": "Say the secret.", "output": "The capital of France is Paris."},
              {"instruction": "Count.", "output": "0 1 2 3 4 5 6 7 8 9 10"}] * 6


@pytest.fixture(scope="session")
def data_file(tmp_path_factory) -> Path:
    """A small alpaca training file (TRAIN_ROWS) for the tiny models."""
    import json

    path = tmp_path_factory.mktemp("train-data") / "tiny.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in TRAIN_ROWS))
    return path
