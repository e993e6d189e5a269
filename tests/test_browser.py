"""End to end in a real headless Chromium: a person clicks through every tab of the launched app.

Runs against the whole app on a free loopback port with the offline SmolLM2, and asserts only on
what the page shows. Each test leaves a screenshot of its tab in $BILLION_SCREENSHOTS (the README's
images: `BILLION_SCREENSHOTS=docs/screenshots pytest tests/test_browser.py`), else in a temp folder.
"""

from __future__ import annotations

import os
import re
import sqlite3
import zipfile
from pathlib import Path

import pytest

from billion.core.availability import available
from billion.core.paths import ASSETS
from billion.core.registry import MODELS, resolve

CHROMIUM = Path(os.environ.get("BILLION_CHROMIUM", "/usr/bin/chromium"))
SAMPLE = ASSETS / "sample_lora" / "pirate.jsonl"
MINUTE = 60_000  # ms; generation on a shared 2-core CPU is slow, so waits are generous

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not any(m.alias == "smollm2-135m" for m in MODELS),
                       reason="needs the offline SmolLM2 entry"),
]


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"no Chromium at {CHROMIUM}: `apt-get install chromium` (bash .ci/setup --dev does it)"
    if os.environ.get("CI"):
        pytest.fail(message)  # CI installs it, so a missing browser is a broken setup, not a skip
    pytest.skip(message)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("BILLION_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def url(request):
    """A separate `python app.py` (conftest.py's app_process, shared with test_paths_security.py),
    with the offline SmolLM2 behind `transformers serve` as an endpoint model where a selected test
    battles it."""
    _require_chromium()
    return request.getfixturevalue("app_process").url


@pytest.fixture(scope="module")
def app_data(app_process) -> Path:
    """The app's data folder (its votes.sqlite3 and sessions.sqlite3)."""
    return app_process.data


@pytest.fixture(scope="module")
def browser(url, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, accept_downloads=True,
            viewport={"width": 1400, "height": 1000},
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, url):
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(url)
    expect(tab.get_by_role("tab", name="Chat")).to_be_visible(timeout=MINUTE)
    yield tab
    tab.close()
    assert not errors, f"the page raised JavaScript errors: {errors}"


def open_tab(page, name: str):
    page.get_by_role("tab", name=name).click()
    panel = page.locator("[role=tabpanel]:visible")
    expect(panel).to_have_count(1)
    return panel


def set_number(panel, label: str, value) -> None:
    """A slider's or number box's typed value (Enter commits it, like a person would)."""
    box = panel.get_by_label(f"number input for {label}").or_(panel.get_by_label(label, exact=True)).first
    box.fill(str(value))
    box.press("Enter")


def shot(page, folder: Path, name: str) -> None:
    page.wait_for_timeout(300)  # let plots finish drawing
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


@pytest.mark.slow  # 13 s: test_app.py::test_chat_answers_through_the_api (Paris, tokens/s, stop) and test_recommended.py's 0.2 start
def test_chat_answers(page, shots):
    panel = open_tab(page, "Chat")
    panel.get_by_role("button", name="Generation settings").click()
    # fix 11: SmolLM2 starts at its model card's temperature, not a generic 0.7
    expect(panel.get_by_label("number input for Temperature (0 = greedy)")).to_have_value("0.2")
    set_number(panel, "Temperature (0 = greedy)", 0)
    set_number(panel, "Max new tokens", 24)
    panel.get_by_placeholder("Ask something…").fill("What is the capital of France?")
    panel.get_by_role("button", name="Send", exact=True).click()
    answer = panel.get_by_test_id("bot").first
    expect(answer).to_contain_text("Paris", timeout=2 * MINUTE)
    expect(panel.get_by_text("tokens/s")).to_be_visible(timeout=MINUTE)
    expect(panel.get_by_text(re.compile(r"stop: (eos|length)"))).to_be_visible()
    shot(page, shots, "chat")


def test_arena_battle_vote_reveal_and_ratings(page, shots):
    panel = open_tab(page, "Arena")
    panel.get_by_role("button", name="Battle settings").click()
    temperature = panel.get_by_label("number input for Temperature (both sides")
    expect(temperature).to_be_enabled()
    panel.get_by_label("One model at two temperatures (0.2 and 1.0)").check()
    expect(temperature).to_be_disabled()  # fix 9: the pool sets both temperatures
    panel.get_by_label("int8", exact=True).check()  # the CPU fast path, named in the reveal
    set_number(panel, "Max new tokens", 16)
    a_is_better = panel.get_by_role("button", name="A is better")
    expect(a_is_better).to_be_disabled()
    panel.get_by_placeholder("Ask both models something…").fill("Name a fruit that is yellow.")
    send = panel.get_by_role("button", name="Send", exact=True)
    send.click()
    # fix 2: no follow-up can be sent (and silently dropped) while both models answer
    expect(send).to_be_disabled()
    expect(panel.get_by_placeholder(re.compile("Both models are answering"))).to_be_disabled()
    expect(a_is_better).to_be_enabled(timeout=2 * MINUTE)
    expect(send).to_be_enabled()
    answers = panel.get_by_test_id("bot")
    expect(answers).to_have_count(2)
    # Blind until the vote: nothing on the tab names a contestant yet.
    assert "smollm2" not in panel.inner_text().lower().split("ratings")[0]
    a_is_better.click()
    revealed = panel.get_by_text("Your vote:")
    expect(revealed).to_be_visible(timeout=MINUTE)
    expect(panel.get_by_role("heading", name="Revealed")).to_be_visible()
    expect(panel.locator("table").filter(has_text="contestant").first).to_contain_text("smollm2-135m")
    # The reveal names the precision that ran (the kernel this machine runs), next to its speed.
    from billion.core.quant import scheme_for
    from billion.core.registry import resolve

    group = resolve("smollm2-135m").quant_group  # the offline GGUF keeps groups of 32
    expect(panel.locator("table").filter(has_text="precision").first).to_contain_text(scheme_for("int8", group).label)
    expect(a_is_better).to_be_disabled()
    expect(panel.get_by_text(re.compile(r"^1 battle counted"))).to_be_visible(timeout=MINUTE)
    ratings = panel.locator(".block").filter(has=page.locator("table", has_text="win rate")).last
    expect(ratings).to_contain_text("smollm2-135m [int8, T=0.2]")
    expect(ratings).to_contain_text("smollm2-135m [int8, T=1]")
    # fix 13: the revealed name is whole, and no Chatbot button covers it
    label = panel.get_by_test_id("block-label").filter(has_text="Model A ·")
    expect(label).to_contain_text(re.compile(r"Model A · smollm2-135m \[int8, T=(1|0\.2)\]$"))
    assert label_clear_of_buttons(label), "a Chatbot button covers the revealed name"
    shot(page, shots, "arena")


def label_clear_of_buttons(label) -> bool:
    """The label's box overlaps none of the buttons of its block (the Chatbot's toolbar)."""
    return label.evaluate("""lab => { const r = lab.getBoundingClientRect();
        return [...lab.closest('.block').querySelectorAll('button')].every(b => {
            const q = b.getBoundingClientRect();
            return q.width === 0 || q.right <= r.left || q.left >= r.right || q.bottom <= r.top || q.top >= r.bottom;
        }); }""")


@pytest.mark.slow  # 3 s: test_phone_every_tab_reachable_and_the_arena_prompt_on_the_first_screen checks it at 390 px
def test_dropdown_text_stops_before_its_arrow_on_a_phone(page):
    """Fix 13: at 390 px the Chat model's name no longer runs on under the dropdown's arrow."""
    page.set_viewport_size({"width": 390, "height": 844})
    box = open_tab(page, "Chat").get_by_role("combobox").first
    expect(box).to_have_value(re.compile("smollm2-135m"))
    text_right, arrow_left = box.evaluate("""i => { const r = i.getBoundingClientRect();
        const arrow = i.closest('.wrap').querySelector('svg').getBoundingClientRect();
        return [r.right - parseFloat(getComputedStyle(i).paddingRight), arrow.left]; }""")
    assert text_right <= arrow_left


def test_table_headers_fit_and_screen_readers_hear_words(page):
    """Fix 13: no header one letter per line; the status region never reads out an i18n key."""
    page.add_init_script("""window.__said = []; new MutationObserver(ms => { for (const m of ms) {
        const el = m.target.nodeType === 1 ? m.target : m.target.parentElement;
        const live = el && el.closest && el.closest('[aria-live]');
        if (live && live.textContent.trim()) window.__said.push(live.textContent.trim()); } })
        .observe(document, {subtree: true, childList: true, characterData: true});""")
    page.reload()
    panel = open_tab(page, "Leaderboard")
    panel.get_by_role("button", name=re.compile("^All results")).click()
    headers = panel.get_by_role("grid", name="All results").get_by_role("columnheader")
    expect(headers.first).to_be_visible(timeout=MINUTE)
    page.wait_for_timeout(1000)  # Gradio sets the column widths once the rows are drawn
    # the header text's own box: a whole header row is as tall as its tallest cell
    heights = headers.evaluate_all("hs => hs.map(h => [h.innerText.trim(), "
                                   "(h.querySelector('.header') || h).getBoundingClientRect().height])")
    line = min(h for _, h in heights)
    assert all(h <= 1.5 * line for _, h in heights), f"headers wrapped: {heights}"
    panel.get_by_role("button", name="Refresh", exact=True).click()
    page.wait_for_function("() => window.__said.some(s => s !== 'Loading')", timeout=MINUTE)
    said = page.evaluate("() => window.__said")
    assert not [s for s in said if re.fullmatch(r"[a-z_]+\.[a-z_]+", s)], said


@pytest.mark.slow  # 12 s; the same mixed battle runs through the API in test_app_arena_endpoints.py
def test_arena_local_against_served_smollm(page, served_smollm):
    """A mixed battle: the local SmolLM2 against the same model behind `transformers serve`."""
    panel = open_tab(page, "Arena")
    panel.get_by_role("button", name="Battle settings").click()
    panel.get_by_label("The local default model against endpoint models").check()
    set_number(panel, "Max new tokens", 12)
    b_is_better = panel.get_by_role("button", name="B is better")
    panel.get_by_placeholder("Ask both models something…").fill("Name a fruit that is red.")
    panel.get_by_role("button", name="Send", exact=True).click()
    expect(b_is_better).to_be_enabled(timeout=2 * MINUTE)
    expect(panel.get_by_test_id("bot")).to_have_count(2)
    before_vote = panel.inner_text().lower().split("ratings")[0]
    assert not [s for s in ("smollm2", "served", str(served_smollm.port)) if s in before_vote]
    b_is_better.click()
    revealed = panel.locator("table").filter(has_text="contestant").first
    expect(revealed).to_contain_text("endpoint:smollm2-served", timeout=MINUTE)
    expect(revealed).to_contain_text("smollm2-135m")
    expect(revealed).to_contain_text("over the network, from 127.0.0.1")
    ratings = panel.locator(".block").filter(has=page.locator("table", has_text="win rate")).last
    expect(ratings).to_contain_text("endpoint:smollm2-served", timeout=MINUTE)


@pytest.mark.slow  # 13 s: test_app_race.py's greedy race is lossless, its replay ends with both whole outputs
def test_speculative_race_is_lossless(page, shots):
    panel = open_tab(page, "Speculative race")
    panel.get_by_role("button", name="repeat", exact=True).click()
    set_number(panel, "Max new tokens", 32)
    panel.get_by_role("button", name="Race", exact=True).click()
    expect(panel.get_by_text("LOSSLESS ✓")).to_be_visible(timeout=3 * MINUTE)
    # Both panes replay at their recorded pace and end with every token shown.
    expect(panel.get_by_text(re.compile(r"✓ finished: 32 tokens"))).to_have_count(2, timeout=MINUTE)
    # Tokens the draft got right are shown in the accepted colour (beyond the legend's sample).
    expect(panel.locator(".provenance-accepted")).not_to_have_count(0)
    assert panel.locator(".provenance-accepted").count() > 1
    shot(page, shots, "race")


def pick(panel, label: str, option: str) -> None:
    """Choose a dropdown entry as a person does: open the list, click the entry."""
    panel.get_by_label(label, exact=True).click()
    panel.page.get_by_role("option", name=re.compile(option)).click()


@pytest.mark.slow  # 22 s; both draft sources race in tests/test_quant_draft.py and test_cross.py
# k: picking a draft source sets the k slider to that source's suggested k (10 for quant drafts,
# which stop earlier on their own; 4 for a model draft)
@pytest.mark.parametrize("option, source, k", [("target itself at int4", "quant:int4", 10),
                                               ("gemma3-270m .*another tokenizer", "gemma3-270m \\(via text\\)", 4)])
def test_speculative_race_with_each_new_draft_source(page, shots, option, source, k):
    if "gemma3" in option and not available(resolve("gemma3-270m")).ok:
        pytest.skip("needs the offline Gemma-3-270M weights")
    panel = open_tab(page, "Speculative race")
    panel.get_by_role("button", name="repeat", exact=True).click()
    set_number(panel, "Max new tokens", 16)
    panel.get_by_label("Warm up first (a few tokens of each run)").uncheck()
    pick(panel, "Draft source", option)
    # The slider shows the source's k before the race starts (the race reads the slider).
    expect(panel.get_by_label("number input for k (tokens drafted per round)")).to_have_value(str(k))
    panel.get_by_role("button", name="Race", exact=True).click()
    # Identical, or (named as such, with its margin) parted only by rounding at a near-tie.
    expect(panel.get_by_text(re.compile("LOSSLESS ✓|DIFFERS BY NUMERICS"))).to_be_visible(timeout=4 * MINUTE)
    expect(panel.get_by_text(re.compile(rf"Speculative decoding \({source}, k={k}\b"))).to_be_visible(timeout=MINUTE)
    panel.get_by_role("button", name=re.compile("Details: rounds")).click()
    expect(panel.get_by_text(re.compile(r"Verify cost"))).to_be_visible()
    shot(page, shots, "race-" + source.split()[0].replace(":", "-"))


@pytest.mark.slow  # 25-70 s: the suite stays under 10 minutes; run with -m slow
def test_lora_upload_train_plot_and_download(page, shots, tmp_path):
    panel = open_tab(page, "LoRA trainer")
    panel.locator("input[type=file][accept*=jsonl]").set_input_files(str(SAMPLE))
    start = panel.get_by_role("button", name="Start training")
    expect(start).to_be_enabled(timeout=MINUTE)
    expect(panel.get_by_text(re.compile(r"100 of 100"))).to_be_visible()
    set_number(panel, "Max steps (0 = use epochs)", 4)
    set_number(panel, "Cutoff (tokens per example)", 64)
    set_number(panel, "Batch size", 2)
    set_number(panel, "Probe steps before training (ETA, memory)", 0)
    panel.get_by_label("Held-out prompts for before/after (one per line)").fill("How do I boil an egg?")
    start.click()
    progress = panel.get_by_text(re.compile(r"step [1-9]/4"))
    expect(progress).to_be_visible(timeout=2 * MINUTE)
    plot = panel.locator(".block").filter(has=page.get_by_text("Loss", exact=True)) \
        .get_by_role("img", name=re.compile("plot")).first
    expect(plot).to_be_visible(timeout=MINUTE)
    early = plot.evaluate("e => e.outerHTML")
    expect(panel.get_by_role("heading", name=re.compile(r"Run .+ finished"))).to_be_visible(
        timeout=4 * MINUTE)
    assert plot.evaluate("e => e.outerHTML") != early, "the loss plot never changed while training"
    expect(panel.get_by_label("Run", exact=True)).to_have_value(re.compile(r"· done$"))
    calls: list[str] = []
    page.on("request", lambda request: calls.append(request.url) if "queue/join" in request.url else None)
    page.wait_for_timeout(4000)
    assert not calls, f"the page kept polling a finished run: {len(calls)} calls in 4 s"
    before_after = panel.get_by_role("grid", name="Before / after")
    expect(before_after.get_by_role("gridcell", name="How do I boil an egg?")).to_be_visible()
    link = panel.get_by_role("row", name=re.compile(r"adapter-.+\.zip")).get_by_role("link")
    with page.expect_download() as download:
        link.click()
    target = tmp_path / "adapter.zip"
    download.value.save_as(target)
    with zipfile.ZipFile(target) as archive:
        names = {Path(n).name for n in archive.namelist()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= names
    shot(page, shots, "trainer")


@pytest.mark.slow  # 25-70 s: the suite stays under 10 minutes; run with -m slow
def test_leaderboard_renders_and_a_small_run_completes(page, shots):
    panel = open_tab(page, "Leaderboard")
    table = panel.get_by_role("grid", name="Leaderboard")  # the model × benchmark view
    expect(table.get_by_role("gridcell", name="published", exact=True).first).to_be_visible(timeout=MINUTE)
    expect(table.get_by_role("columnheader", name="average (%)")).to_be_visible()
    expect(panel.locator(".js-plotly-plot, img, svg.main-svg, canvas").first).to_be_visible()
    panel.get_by_role("button", name="Run benchmark").first.click()
    set_number(panel, "Limit per task (0: full task)", 5)
    panel.get_by_label("speed · time to first token, tokens/s, memory").check()
    panel.get_by_label("Speed: prompt lengths (tokens)").fill("16")
    set_number(panel, "Speed: new tokens per run", 4)
    set_number(panel, "Speed: timed runs", 1)
    panel.get_by_role("button", name="Run benchmark", exact=True).last.click()
    # fix 10: the status says what runs now
    expect(panel.get_by_text(re.compile(r"Now: smollm2-135m · "))).to_be_visible(timeout=MINUTE)
    expect(panel.get_by_text(re.compile(r"2 of 2 tasks done"))).to_be_visible(timeout=3 * MINUTE)
    expect(panel.get_by_text(re.compile(r"[1-9]\d* scores stored"))).to_be_visible()
    # the full speed run is a measured row; the 5-item run is a quick run, not ranked (fix 4)
    expect(table.get_by_role("gridcell", name="measured", exact=True).first).to_be_visible(timeout=MINUTE)
    panel.get_by_role("button", name=re.compile("^Quick runs")).click()
    quick = panel.get_by_role("grid", name="Quick runs")
    expect(quick.get_by_role("gridcell", name="smollm2-135m", exact=True).first).to_be_visible()
    shot(page, shots, "leaderboard")



# ---- issue 14, fix 3: what a reload brings back; a token from another browser gets nothing -----------

def reload(page, tab: str):
    page.reload()
    expect(page.get_by_role("tab", name="Chat")).to_be_visible(timeout=MINUTE)
    return open_tab(page, tab)


def forget_browser(page, storage_key: str, tab: str):
    """Drop this browser's token for a tab: the page then is what another browser sees."""
    page.evaluate(f"localStorage.removeItem({storage_key!r})")
    return reload(page, tab)


@pytest.mark.slow  # ~20 s: the suite stays under 10 minutes (tests/test_ui_session.py runs the parts)
def test_chat_history_survives_a_reload_even_mid_stream(page):
    panel = open_tab(page, "Chat")
    # an earlier test's chat comes back too; the app's Clear (with text), not the Chatbot's icon
    panel.get_by_role("button", name="Clear", exact=True).filter(has_text="Clear").click()
    expect(panel.get_by_test_id("bot")).to_have_count(0)
    panel.get_by_role("button", name="Generation settings").click()
    set_number(panel, "Temperature (0 = greedy)", 0)
    set_number(panel, "Max new tokens", 160)
    panel.get_by_placeholder("Ask something…").fill("Tell me about the history of Paris.")
    panel.get_by_role("button", name="Send", exact=True).click()
    answer = panel.get_by_test_id("bot").last
    expect(answer).to_contain_text(re.compile(r"\w{3}"), timeout=2 * MINUTE)
    seen = answer.inner_text().strip()
    panel = reload(page, "Chat")  # while it streams
    restored = panel.get_by_test_id("bot").last
    expect(restored).to_contain_text(re.compile(r"\w{3}"), timeout=MINUTE)
    expect(panel.get_by_test_id("user").last).to_contain_text("history of Paris")
    text = restored.inner_text().strip()
    assert text.startswith(seen[:20]) or seen.startswith(text[:20]), (seen, text)
    panel = forget_browser(page, "billion-chat-session", "Chat")
    page.wait_for_timeout(1500)  # the load event has run by then
    expect(panel.get_by_test_id("bot")).to_have_count(0)


def voted_battles(folder: Path) -> int:
    with sqlite3.connect(folder / "votes.sqlite3") as con:
        return con.execute("SELECT COUNT(*) FROM battles WHERE vote IS NOT NULL").fetchone()[0]


@pytest.mark.slow  # ~50 s
def test_an_unvoted_battle_survives_a_reload_and_takes_one_vote(page, app_data):
    panel = open_tab(page, "Arena")
    panel.get_by_role("button", name="Battle settings").click()
    set_number(panel, "Max new tokens", 12)
    panel.get_by_placeholder("Ask both models something…").fill("Name a fruit that is green.")
    panel.get_by_role("button", name="Send", exact=True).click()
    expect(panel.get_by_role("button", name="A is better")).to_be_enabled(timeout=2 * MINUTE)
    answers = [a.inner_text() for a in panel.get_by_test_id("bot").all()]
    votes = voted_battles(app_data)
    panel = reload(page, "Arena")
    a_is_better = panel.get_by_role("button", name="A is better")
    expect(a_is_better).to_be_enabled(timeout=MINUTE)
    expect(panel.get_by_test_id("bot")).to_have_count(2)
    assert [a.inner_text() for a in panel.get_by_test_id("bot").all()] == answers
    assert "smollm2" not in panel.inner_text().lower().split("ratings")[0]  # still blind
    a_is_better.click()
    expect(panel.get_by_text("Your vote:")).to_be_visible(timeout=MINUTE)
    assert voted_battles(app_data) == votes + 1
    panel = reload(page, "Arena")  # voted: nothing comes back, nothing to vote on twice
    page.wait_for_timeout(1500)
    expect(panel.get_by_test_id("bot")).to_have_count(0)
    expect(panel.get_by_role("button", name="A is better")).to_be_disabled()
    assert voted_battles(app_data) == votes + 1


@pytest.mark.slow  # ~35 s
def test_trainer_form_and_file_survive_a_reload(page):
    # the browser profile is shared: start as a browser the trainer has not seen (an earlier test's
    # upload would come back, and the form would have no empty file input)
    panel = forget_browser(page, "billion-trainer-owner", "LoRA trainer")
    panel.locator("input[type=file][accept*=jsonl]").set_input_files(str(SAMPLE))
    expect(panel.get_by_text(re.compile(r"100 of 100"))).to_be_visible(timeout=MINUTE)
    set_number(panel, "Max steps (0 = use epochs)", 7)
    set_number(panel, "Cutoff (tokens per example)", 96)
    prompts = panel.get_by_label("Held-out prompts for before/after (one per line)")
    prompts.fill("Where is the treasure?")
    prompts.blur()
    page.wait_for_timeout(1500)  # the file is copied after it reads
    panel = reload(page, "LoRA trainer")
    expect(panel.get_by_label("number input for Cutoff (tokens per example)")).to_have_value("96", timeout=MINUTE)
    expect(panel.get_by_label("Max steps (0 = use epochs)", exact=True)).to_have_value("7")
    expect(panel.get_by_label("Held-out prompts for before/after (one per line)")).to_have_value(
        "Where is the treasure?")
    expect(panel.get_by_role("cell", name="pirate.jsonl")).to_be_visible(timeout=MINUTE)
    expect(panel.get_by_text(re.compile(r"100 of 100"))).to_be_visible(timeout=MINUTE)
    expect(panel.get_by_role("button", name="Start training")).to_be_enabled()
    panel = forget_browser(page, "billion-trainer-owner", "LoRA trainer")
    page.wait_for_timeout(1500)
    expect(panel.get_by_label("Max steps (0 = use epochs)", exact=True)).not_to_have_value("7")
    expect(panel.get_by_role("cell", name="pirate.jsonl")).to_have_count(0)


# ---- issue 14: the phone layout --------------------------------------------------------------------

TABS = ("Chat", "Arena", "Leaderboard", "Speculative race", "LoRA trainer")


def test_phone_every_tab_reachable_and_the_arena_prompt_on_the_first_screen(browser, url):
    phone = browser.new_page()
    phone.set_viewport_size({"width": 390, "height": 844})
    try:
        phone.goto(url)
        expect(phone.get_by_role("tab", name="Chat")).to_be_visible(timeout=MINUTE)
        expect(phone.get_by_role("button", name="More tabs")).to_have_count(0)  # nothing behind "…"
        for name in (*TABS[1:], TABS[0]):
            tab = phone.get_by_role("tab", name=name)
            expect(tab).to_be_visible()
            box = tab.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, (name, box)
            tab.click()
            expect(tab).to_have_attribute("aria-selected", "true")
        open_tab(phone, "Arena")
        prompt = phone.get_by_placeholder("Ask both models something…")
        expect(prompt).to_be_visible()
        top, answers = prompt.bounding_box()["y"], phone.locator(".arena-answers").bounding_box()
        assert top + 40 <= 844, f"the Arena prompt starts {top:.0f} px down, below the first screen"
        assert answers is None or top < answers["y"], "the prompt sits below the empty answer panels"
        # A dropdown's text ends before its arrow.
        model = open_tab(phone, "Chat").get_by_label("Model", exact=True).first
        text_end, arrow = model.evaluate("e => [e.getBoundingClientRect().right - parseFloat("
                                         "getComputedStyle(e).paddingRight), e.parentElement"
                                         ".querySelector('.icon-wrap').getBoundingClientRect().left]")
        assert text_end <= arrow + 1, (text_end, arrow)
    finally:
        phone.close()
