"""The LoRA trainer tab through gradio_client against a real launched server (offline SmolLM2)."""

import math
import zipfile

import pytest
from gradio_client import Client, handle_file

from app_server import serve_app
from billion.context import build_context
from billion.core.settings import Settings
from billion.ui.trainer import SAMPLE_DATA


@pytest.fixture(scope="module")
def app_ctx(tmp_path_factory, models):
    """The app's context: the test reads the runs it lists."""
    ctx = build_context(Settings.in_folder(tmp_path_factory.mktemp("trainer-app")), models)
    yield ctx
    ctx.store.close()


@pytest.fixture(scope="module")
def trainer_client(app_ctx):
    """A client of the app served on app_ctx, whose runs the training test reads."""
    with serve_app(ctx=app_ctx) as url:
        yield Client(url, verbose=False)


@pytest.fixture(scope="module")
def client(app_url):
    """A client of the session's app (conftest.py's app_url): the tests that train nothing."""
    return Client(app_url, verbose=False)


@pytest.mark.slow  # 25-70 s: the suite stays under 10 minutes; run with -m slow
def test_sample_upload_trains_and_serves_the_adapter(trainer_client, app_ctx, tmp_path):
    summary, zip_path = trainer_client.predict(handle_file(str(SAMPLE_DATA)), "smollm2-135m", 3, 4, 2e-3,
                                               64, "What is the capital of Japan?", api_name="/train")
    assert summary["state"] == "done" and summary["steps"] == 3
    assert len(summary["train_losses"]) == 3 and all(math.isfinite(x) for x in summary["train_losses"])
    assert math.isfinite(summary["eval_loss_before"]) and math.isfinite(summary["eval_loss_after"])
    # Three steps on pirate answers already move the held-out loss, and downwards.
    assert summary["eval_loss_after"] < summary["eval_loss_before"]
    (pair,) = summary["answers"]
    assert pair["prompt"] == "What is the capital of Japan?" and pair["before"] and pair["after"]
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    # The run is listed for the page's run picker (a reload re-attaches through this list).
    assert summary["run_id"] in [r["id"] for r in app_ctx.runs.runs()]


def test_sample_button_reports_the_format(client):
    report, problems, prompts = client.predict(api_name="/trainer_sample")
    assert "alpaca" in report and "100 of 100" in report
    assert problems["data"] == [] and len(prompts.splitlines()) == 4


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", b"", "empty"),
    ("binary.jsonl", bytes(range(256)) * 4, "binary"),
    ("blank_output.jsonl", b'{"instruction": "hi", "output": ""}\n', "row 1: field `output` is empty"),
])
def test_bad_upload_is_refused_and_the_app_stays_up(client, tmp_path, name, content, message):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(Exception, match=message):
        client.predict(handle_file(str(bad)), "smollm2-135m", 3, 4, 2e-3, 64, "", api_name="/train")
    report, *_ = client.predict(handle_file(str(bad)), api_name="/trainer_inspect")
    assert report.startswith("❌") and message in report
    report, *_ = client.predict(handle_file(str(SAMPLE_DATA)), api_name="/trainer_inspect")
    assert "100 of 100" in report
