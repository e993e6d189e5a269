"""A model's memory measured alone in a child process (issue 14, fix 5)."""

from __future__ import annotations

import pytest

from billion.bench.isolated import isolated_memory
from billion.core.loading import LoadOptions
from billion.core.registry import MODELS

pytestmark = pytest.mark.skipif(not any(m.alias == "smollm2-135m" for m in MODELS),
                                reason="needs the offline SmolLM2 entry")


def test_smollm2_alone_is_its_weights_plus_working_memory_not_the_servers_rss(models):
    loaded = models.load("smollm2-135m", LoadOptions(dtype="fp32"))
    alone = isolated_memory("smollm2-135m", LoadOptions(dtype="fp32"), prompt_tokens=32, new_tokens=4)
    assert alone.weight_bytes == loaded.weight_bytes
    # the weights are resident, plus a little working memory; nothing like a server's gigabytes
    assert 0.8 * alone.weight_bytes < alone.peak_bytes < alone.weight_bytes + 600 * 2**20
