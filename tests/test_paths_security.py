"""No endpoint reads or writes a file outside the app's own folders.

The app runs as `python app.py` (its real `allowed_paths`), with its data folder, store and Gradio
upload folder in fresh temporary folders (one process a run: test_browser.py clicks through it too).
Every way in that takes a file or a name that could become a path is tried with `../` names,
URL-encoded ones and absolute paths: Gradio's file route, uploads, file inputs that were never
uploaded, training run ids (public endpoints and the page's own poll event, called as the browser
calls it) and model names. docs/faults.md lists the checks.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from app_server import call_page_event
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from billion.core.paths import REPO_ROOT
from billion.ui.trainer import SAMPLE_DATA

SECRET = "SECRET-" + secrets.token_hex(4)  # in every file that must stay unread
FILE_DATA = {"_type": "gradio.FileData"}


@dataclass(frozen=True)
class Served:
    url: str
    data: Path
    uploads: Path
    outside: Path

    @property
    def exports(self) -> Path:
        return self.data / "exports"

    @property
    def db(self) -> Path:
        return self.data / "votes.sqlite3"  # where start_app points BILLION_DB


@pytest.fixture(scope="module")
def app(app_process, tmp_path_factory) -> Served:
    # The real `python app.py` (conftest.py's app_process, which test_browser.py clicks through
    # too), so its real allowed_paths apply; Gradio's uploads go to a known folder.
    served = Served(app_process.url, app_process.data, app_process.uploads,
                    tmp_path_factory.mktemp("paths") / "outside")
    served.outside.mkdir()
    # Files the app must never hand out: one outside every app folder, one in a run folder.
    (served.outside / "secret.jsonl").write_text(json.dumps({"instruction": SECRET, "output": SECRET}) + "\n")
    run = served.data / "runs" / "20990101-000000-beef"
    run.mkdir(parents=True)
    (run / "data.jsonl").write_text(json.dumps({"instruction": SECRET, "output": SECRET}) + "\n")
    served.exports.mkdir(exist_ok=True)
    (served.exports / "shared.txt").write_text("EXPORTED-" + SECRET[7:])
    return served


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.url, verbose=False)


def upload(app: Served, name: str, content: bytes) -> Path:
    response = httpx.post(app.url + "gradio_api/upload", files={"files": (name, content)})
    response.raise_for_status()
    (path,) = response.json()
    return Path(path)


def call(app: Served, api: str, *data) -> str:
    """A public endpoint through the raw HTTP API (gradio_client would upload local paths itself)."""
    started = httpx.post(app.url + f"gradio_api/call/{api}", json={"data": list(data)})
    started.raise_for_status()
    return httpx.get(app.url + f"gradio_api/call/{api}/{started.json()['event_id']}", timeout=60).text


def files_named(fragment: str, *folders: Path) -> list[Path]:
    """Files whose name holds `fragment`, anywhere under the given folders."""
    return [p for folder in folders if folder.is_dir() for p in folder.rglob(f"*{fragment}*")]


def inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


# ---- Gradio's file route ------------------------------------------------------------------------

def file_route_cases(app: Served) -> list[tuple[str, str]]:
    """(name asked for, text that must not come back)."""
    run_data = app.data / "runs" / "20990101-000000-beef" / "data.jsonl"
    cases = [
        ("/etc/passwd", "root:"),
        ("../../../../../../etc/passwd", "root:"),
        ("..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "root:"),
        ("%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "root:"),
        ("file:///etc/passwd", "root:"),
        (f"{app.uploads}/../../../../../etc/passwd", "root:"),
        (str(app.db), "SQLite format"),
        (f"{app.exports}/../{app.db.name}", "SQLite format"),
        (f"{app.exports}/..%2f{app.db.name}", "SQLite format"),
        (f"{app.exports}/%2e%2e/runs/20990101-000000-beef/data.jsonl", SECRET),
        (str(run_data), SECRET),
        (str(app.outside / "secret.jsonl"), SECRET),
        (str(REPO_ROOT / "app.py"), "build_demo"),
        ("app.py", "build_demo"),
        ("billion/core/paths.py", "BILLION_DATA_DIR"),
    ]
    cached = sorted((Path.home() / ".cache" / "billion").glob("converted/*/config.json"))
    if cached:
        cases.append((str(cached[0]), "model_type"))
    return cases


def test_the_file_route_serves_the_export_folder_and_nothing_else(app):
    shared = httpx.get(app.url + f"gradio_api/file={app.exports / 'shared.txt'}")
    assert shared.status_code == 200 and shared.text == "EXPORTED-" + SECRET[7:]
    for name, text in file_route_cases(app):
        for route in ("gradio_api/file=", "file="):
            response = httpx.get(app.url + route + name)
            assert response.status_code in (403, 404), (route, name, response.status_code)
            assert text not in response.text, (route, name)


# ---- uploads ------------------------------------------------------------------------------------

@pytest.mark.parametrize("pattern", ["../../{}", "../../../../../../tmp/{}", "{outside}/{}",
                                     "..\\..\\{}", "..%2f..%2f{}", "/etc/{}"])
def test_upload_names_cannot_place_a_file_outside_the_upload_folder(app, pattern):
    name = f"evil-{secrets.token_hex(3)}.jsonl"
    stored = upload(app, pattern.format(name, outside=app.outside), b'{"instruction": "a", "output": "b"}\n')
    assert inside(stored, app.uploads) and name in stored.name
    found = files_named(name, app.outside, app.data, Path(REPO_ROOT)) + \
        [p for p in (Path("/tmp") / name, Path("/etc") / name, app.uploads.parent / name) if p.exists()]
    assert found == []
    assert [p for p in files_named(name, app.uploads) if not inside(p, app.uploads)] == []


# ---- file inputs that were never uploaded -------------------------------------------------------

def test_file_inputs_only_take_uploaded_files(app):
    outside = app.outside / "secret.jsonl"
    names = [str(outside), f"{app.uploads}/../outside/secret.jsonl",
             str(app.data / "runs" / "20990101-000000-beef" / "data.jsonl")]
    for name in names:
        for api, data in (("trainer_inspect", ()), ("train", ("smollm2-135m", 1, 4, 1e-3, 64, ""))):
            reply = call(app, api, {"path": name, "meta": FILE_DATA}, *data)
            assert reply.startswith("event: error"), (api, name, reply[:200])
            assert SECRET not in reply and "usable rows" not in reply
    # The same file, uploaded, is read: the refusal above is about where it lives.
    uploaded = upload(app, "mine.jsonl", outside.read_bytes())
    assert "usable rows:** 1 of 1" in call(app, "trainer_inspect", {"path": str(uploaded), "meta": FILE_DATA})


# ---- run ids ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted_run(app) -> Path:
    """A run.json uploaded through Gradio (anyone can upload any file), pointing outside: its folder
    is what a forged run id would name."""
    adapter = app.outside / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    record = {"id": "stolen", "created_at": "2099-01-01T00:00:00+00:00", "status": "done",
              "config": {"model": "smollm2-135m"}, "data_hash": "x", "output_dir": str(app.outside),
              "results": {"adapter_dir": str(adapter), "adapter_zip": str(app.outside / "secret.jsonl"),
                          "step": 1, "max_steps": 1}, "prompts": []}
    return upload(app, "run.json", json.dumps(record).encode()).parent


def forged_run_ids(app: Served, planted: Path) -> list[str]:
    return ["..", "../..", "/etc", str(app.outside), str(planted), f"../../../../../../..{planted}",
            "../runs/20990101-000000-beef", "20990101-000000-beef/../../exports"]


def test_run_ids_name_run_folders_only(app, client, planted_run):
    for run_id in forged_run_ids(app, planted_run):
        with pytest.raises(AppError, match="No training run|not training in this process"):
            client.predict(run_id, api_name="/trainer_stop")
        with pytest.raises(AppError, match="No training run"):
            client.predict(run_id, "stolen", api_name="/trainer_to_arena")
    con = sqlite3.connect(app.db)
    try:
        assert con.execute("SELECT count(*) FROM arena_contestants").fetchone() == (0,)
    finally:
        con.close()


def test_the_page_poll_refuses_forged_run_ids(app, planted_run):
    """The run picker takes typed values, and its timer's poll event is reachable without an API name:
    a forged id must neither read the planted record nor copy the file it names into the exports."""
    for run_id in forged_run_ids(app, planted_run):
        reply = call_page_event(app.url, "tick", run_id, [], None)
        assert reply["success"], reply
        events, _, progress, *_rest, download, _timer, _runs = reply["output"]["data"]
        assert "No training run" in progress and not (download or {}).get("path")
        assert SECRET not in json.dumps(reply)
    copied = [p for p in app.exports.rglob("*") if p.is_file() and SECRET in p.read_text(errors="ignore")]
    assert copied == [] and files_named("stolen", app.data, app.outside) == []


# ---- model names --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["/etc", "../../../tmp", str(REPO_ROOT)])
def test_model_names_are_registry_choices_not_paths(client, name):
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict("hi", [], [], False, name, name, "", 0.0, 0.95, 0, 1.0, 4, 0, "auto", api_name="/chat")
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict([name], ["billion-mc"], 1, "auto", "none", 0, "16", 4, 1, api_name="/bench")
    with pytest.raises(AppError, match="not an available draft"):
        client.predict("hi", "smollm2-135m", name, 8, 4, False, 0.0, 8, False, False, api_name="/race")
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(handle_file(str(SAMPLE_DATA)), name, 1, 4, 1e-3, 64, "", api_name="/train")
