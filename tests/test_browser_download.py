"""A person picks a hub model that is not downloaded yet and watches the download in the Chat tab.

`python app.py` runs as a separate process with an empty Hugging Face cache and HF_ENDPOINT at a
loopback hub (tests/fake_hub.py) that serves the tiny TinyLlama stand-in at a throttled rate, so the
download takes several seconds; headless Chromium reads the progress line under the answer.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from app_process import start_app
from fake_hub import FakeHub

CHROMIUM = Path(os.environ.get("BILLION_CHROMIUM", "/usr/bin/chromium"))
MINUTE = 60_000
PROGRESS = re.compile(r"Downloading TinyLlama-1\.1B-Chat \(first use on this server\): ([\d.,]+) of ([\d.,]+) MB")

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = pytest.mark.browser


@pytest.fixture
def hub(hub_repos):
    total = sum(len(data) for data in hub_repos["tinyllama"].files.values())
    with FakeHub(hub_repos, rate_bytes_s=total / 6) as server:  # about 6 s for the whole model
        yield server


@pytest.fixture
def url(hub, tmp_path):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install chromium`")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    app = start_app(tmp_path / "app", budget_gb=4, env={
        "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
        "HF_TOKEN": ""})
    try:
        yield app.url
    finally:
        app.stop()


@pytest.mark.slow  # ~32 s with its server: the suite stays under 10 minutes; downloads with progress run
# through the app in tests/test_app_downloads.py, the chat's progress line in tests/test_ui_downloads.py
def test_chat_shows_the_download_moving_then_answers(url, tmp_path_factory):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        panel = page.locator("[role=tabpanel]:visible")
        model = panel.get_by_label("Model", exact=True)
        expect(model).to_be_visible(timeout=MINUTE)
        model.click()
        page.get_by_role("option", name=re.compile(r"^tinyllama")).click()
        panel.get_by_role("button", name="Generation settings").click()
        for label, value in (("Temperature (0 = greedy)", 0), ("Max new tokens", 4)):
            box = panel.get_by_label(f"number input for {label}").or_(panel.get_by_label(label, exact=True)).first
            box.fill(str(value))
            box.press("Enter")
        panel.get_by_placeholder("Ask something…").fill("What is the capital of France?")
        panel.get_by_role("button", name="Send", exact=True).click()

        shots = Path(os.environ.get("BILLION_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
        seen: list[tuple[float, float]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not panel.get_by_text("tokens/s").count():
            match = PROGRESS.search(panel.inner_text())
            if match:
                seen.append(tuple(float(g.replace(",", "")) for g in match.groups()))  # type: ignore[arg-type]
                if len(seen) == 3:  # the README's picture of a download under way
                    page.screenshot(path=str(shots / "download.png"), full_page=True)
            page.wait_for_timeout(250)
        expect(panel.get_by_text("tokens/s")).to_be_visible(timeout=MINUTE)  # then it answers
        browser.close()

    done = [d for d, _ in seen]
    assert len(set(done)) >= 3, f"the progress line did not move: {seen}"
    assert done == sorted(done) and len({total for _, total in seen}) == 1
    assert seen[0][0] < seen[0][1], "the download was already complete when first seen"
