"""What the served page shows before anyone clicks (issue 14's cosmetic fixes, 13), from its config."""

from __future__ import annotations

import httpx
import pytest

from billion.bench.leaderboard import RUN_COLUMNS
from billion.core.registry import MODELS

pytestmark = pytest.mark.skipif(not any(m.alias == "smollm2-135m" for m in MODELS),
                                reason="needs the offline SmolLM2 entry")


@pytest.fixture(scope="module")
def components(app_url):
    return [c["props"] for c in httpx.get(app_url + "config").json()["components"]]


def by_label(components, label, dropdown=False):
    return [c for c in components if c.get("label") == label and (not dropdown or "choices" in c)]


def test_side_by_side_chat_names_model_b_and_defaults_to_another_model(components):
    first = by_label(components, "Model", dropdown=True)[0]  # the Chat tab comes first
    [second] = by_label(components, "Model B", dropdown=True)
    assert second["value"] != first["value"]
    assert not by_label(components, "Second model")


def test_this_run_table_starts_with_its_column_names(components):
    [run_table] = by_label(components, "This run")
    assert run_table["value"]["headers"] == RUN_COLUMNS
