"""The Speculative race tab: its `race` endpoint on the real launched app with the offline SmolLM2,
its refusals of bad input, and the pure rendering and replay schedule it uses."""

from __future__ import annotations


import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from billion.core.registry import MODELS
from billion.ui.race_render import fit_pieces, replay_frames

needs_smollm2 = pytest.mark.skipif(not any(m.alias == "smollm2-135m" for m in MODELS),
                                   reason="needs the offline SmolLM2 entry")
REPEAT = ("Repeat this text exactly: The cat sat on the mat. The dog slept by the door. "
          "The bird sang in the tree.")


def race_args(prompt: str = REPEAT, k: float = 4, temperature: float = 0, max_new_tokens: int = 32,
              draft: str = "prompt-lookup") -> tuple:
    # prompt, target, draft, self layers, k, dynamic, temperature, max new tokens, HF reference, warm-up
    return (prompt, "smollm2-135m", draft, 8, k, False, temperature, max_new_tokens, False, True)


@pytest.fixture(scope="module")
def client(app_url):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 135M model on a shared 2-core machine runs faster on one thread
    yield Client(app_url, verbose=False)
    torch.set_num_threads(threads)


@needs_smollm2
def test_bad_input_is_refused_then_a_greedy_race_is_lossless(client):
    with pytest.raises(AppError, match="k must be between 1"):
        client.predict(*race_args(k=0), api_name="/race")
    with pytest.raises(AppError, match="k must be a whole number"):
        client.predict(*race_args(k=2.5), api_name="/race")
    with pytest.raises(AppError, match="empty"):
        client.predict(*race_args(prompt="   "), api_name="/race")
    with pytest.raises(AppError, match="context"):
        client.predict(*race_args(prompt="Repeat:" + " x" * 12000), api_name="/race")
    with pytest.raises(AppError, match="self:N"):
        client.predict(*race_args(draft="self:99"), api_name="/race")

    summary, badge, figures, stats, rounds = client.predict(*race_args(), api_name="/race")
    plain, spec = summary["plain"], summary["speculative"]
    assert summary["lossless"] is True and summary["first_difference"] is None
    assert plain["text"] and plain["text"] == spec["text"] and plain["tokens"] == spec["tokens"] <= 32
    assert 0 <= summary["acceptance_rate"] <= 1 and summary["speedup"] > 0
    assert plain["tokens_per_s"] > 0 and spec["ttft_s"] > 0 and summary["draft"] == "prompt lookup"
    assert "LOSSLESS ✓" in badge and "| speculative |" in figures and "Acceptance rate" in stats
    # Every round of the detail view, with the target's added token coloured by its kind.
    assert rounds.count("<tr>") == spec["rounds"] + 1
    assert rounds.count('class="provenance-correction"') + rounds.count('class="provenance-bonus"') \
        >= spec["rounds"]


@needs_smollm2
def test_quantized_self_draft_race_reports_its_verify_cost(client):
    with pytest.raises(AppError, match="quant:int8 or quant:int4"):
        client.predict(*race_args(draft="quant:int3"), api_name="/race")
    summary, badge, figures, stats, rounds = client.predict(*race_args(draft="quant:int8", max_new_tokens=16),
                                                            api_name="/race")
    assert summary["draft"] == "quant:int8" and summary["verdict"] in ("identical", "numerics")
    assert summary["lossless"] is True or summary["divergence"]["numerics"] is True
    assert summary["acceptance_rate"] > 0.5  # the same network at int8 mostly agrees with itself
    assert summary["verify_cost_ratio"] > 0 and summary["predicted_speedup_measured"] > 0
    assert "Verify cost" in stats and "plain 1-token steps" in stats


@needs_smollm2
def test_sampling_race_says_why_lossless_does_not_apply(client):
    summary, badge, *_ = client.predict(*race_args(temperature=0.8, max_new_tokens=8), api_name="/race")
    assert summary["lossless"] is None and summary["first_difference"] is None
    assert "not applicable" in badge and "distribution" in badge
    assert 0 < summary["speculative"]["tokens"] <= 8


def test_replay_keeps_the_recorded_pace_and_caps_its_length():
    plain = [0.5, 1.0, 1.5, 2.0]
    spec = [0.6, 0.6, 0.6, 1.2]
    frames = replay_frames(plain, spec, max_seconds=20.0)
    assert [(f.plain, f.speculative) for f in frames][-1] == (4, 4)
    assert frames[0].plain == frames[0].speculative == 0
    # Real time: a token shows at its recorded time, at most one frame late; three drafts land at once.
    at_06 = next(f for f in frames if f.speculative == 3)
    assert 0.6 <= at_06.at_s <= 0.65 and at_06.plain == 1
    long = replay_frames([i * 0.5 for i in range(1, 201)], [i * 0.25 for i in range(1, 201)], 20.0)
    assert long[-1].at_s <= 20.0 + 0.05 and long[-1].plain == 200
    steps = [(b.at_s - a.at_s, b.plain - a.plain, b.speculative - a.speculative)
             for a, b in zip(long, long[1:])]
    assert all(dt >= 0.05 - 1e-9 and dp >= 0 and ds >= 0 for dt, dp, ds in steps)


def test_pieces_fit_the_final_text_and_model_text_is_escaped():
    assert fit_pieces([" Hi", " there", "\nUser:"], "Hi there") == ("Hi", " there", "")
    assert fit_pieces(["a", "b"], "ab") == ("a", "b")

    from billion.ui.race_render import _chip, _span

    assert "<script>" not in _span("<script>alert(1)</script>", "accepted")
    assert "&lt;b&gt;" in _chip("<b>", "rejected") and "provenance-rejected" in _chip("<b>", "rejected")


def test_replay_of_a_real_race_ends_with_both_whole_outputs(tiny_dir, models):
    import html
    import re

    from billion.spec.race import run_race
    from billion.core.sampling import SamplingSettings
    from billion.ui.race import replay
    from billion.ui.race_render import build_view, rounds_html

    target = models.load(str(tiny_dir))
    result = run_race(target, "prompt-lookup", 3, SamplingSettings(temperature=0, max_new_tokens=16),
                      [{"role": "user", "content": "Repeat: a b c a b c a b c"}], warmup=False)
    view = build_view(result, target.tokenizer)
    frames = list(replay(view))
    plain_html, spec_html = frames[-1]
    body = re.compile(r"<div style='white-space:pre-wrap[^']*'>(.*?)</div></div>", re.S)
    assert html.unescape(body.search(plain_html).group(1)) == result.plain.text
    spans = re.findall(r'<span class="provenance-(\w+)" title="[^"]*">(.*?)</span>',
                       body.search(spec_html).group(1), re.S)
    assert html.unescape("".join(text for _, text in spans)) == result.speculative.text
    assert {kind for kind, _ in spans} <= {"accepted", "correction", "bonus"}
    assert "✓ finished" in plain_html and "✓ finished" in spec_html
    assert rounds_html(view).count("<tr>") == len(result.speculative.rounds) + 1
