"""README front matter is valid for a Gradio Space and mirrors the registry."""

import re
from pathlib import Path

import gradio
import yaml

from billion.core.registry import MODELS

README = Path(__file__).parent.parent / "README.md"


def front_matter() -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", README.read_text(), re.S)
    assert match, "README.md must start with --- front matter ---"
    return yaml.safe_load(match.group(1))


def test_space_front_matter():
    meta = front_matter()
    for key in ("title", "emoji", "sdk", "sdk_version", "app_file", "short_description", "models",
                "license"):
        assert meta.get(key), key
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["sdk_version"] == gradio.__version__
    assert len(meta["short_description"]) <= 60


def test_models_mirror_registry_hub_ids():
    hub_ids = {m.hub_id for m in MODELS if m.hub_id}
    assert set(front_matter()["models"]) == hub_ids


def test_readme_commands_match_ci():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    assert "bash .ci/setup && .venv/bin/python app.py" in text
    assert "bash .ci/setup --dev && .venv/bin/python -m pytest" in text
    assert "bash .ci/setup --dev" in ci and ".venv/bin/python -m pytest" in ci


def test_space_colours_are_ones_the_hub_accepts():
    allowed = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}
    meta = front_matter()
    assert meta["colorFrom"] in allowed and meta["colorTo"] in allowed


def test_readme_shows_every_tab():
    """Each tab of the app has a screenshot in the README, and every image it links exists."""
    import app

    text = README.read_text()
    images = re.findall(r'<img src="([^"]+)"', text) + re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    for image in images:
        assert (README.parent / image).is_file(), image
    demo = app.build_demo()
    tabs = [block.label for block in demo.blocks.values() if type(block).__name__ == "Tab"]
    assert len(tabs) == 5, tabs
    for tab in tabs:
        assert re.search(rf'alt="{re.escape(tab)} tab', text), f"no screenshot of the {tab} tab"


def test_space_preloads_the_compared_models_as_billion_loads_them():
    """preload_from_hub: `repo files commit` for each compared model, the files the loader reads
    (one copy of the weights) at the commit the registry pins, or main where it pins none."""
    from billion.core.hub_cache import needed_files, weight_files
    from billion.core.registry import COMPARED, resolve

    entries = {line.split()[0]: line.split()[1:] for line in front_matter()["preload_from_hub"]}
    assert set(entries) == {resolve(alias).hub_id for alias in COMPARED}
    for alias in COMPARED:
        spec = resolve(alias)
        files, *commit = entries[spec.hub_id]
        names = files.split(",")
        assert needed_files(names) == names and weight_files(names), alias
        assert commit == ([spec.source.revision] if spec.source.revision else []), alias
