"""The race: plain then speculative decoding on tiny local models, its checks of bad input, and the CLI."""

from __future__ import annotations

import argparse

import pytest

from billion.commands import race as race_command
from billion.core.errors import BillionError
from billion.spec.race import DraftChoice, first_difference, k_sweep, parse_draft, run_race
from billion.core.sampling import SamplingSettings
from billion.spec.decoding import KSchedule
from tiny_models import build_tokenizer, tiny_llama
from evicting import Evictor, budget_for, cached, in_thread

GREEDY = SamplingSettings(temperature=0, max_new_tokens=20)
MESSAGES = [{"role": "user",
             "content": "Repeat: the capital of France is Paris. The capital of Italy is Rome."}]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def target(tiny_dir, models):
    return models.load(str(tiny_dir))


def save_model(directory, tokenizer, layers: int):
    model = tiny_llama(len(tokenizer), seed=5, layers=layers)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def test_parse_draft():
    assert parse_draft("prompt-lookup") == DraftChoice("prompt_lookup")
    assert parse_draft(" self:8 ") == DraftChoice("self", layers=8)
    assert parse_draft("smollm2-135m") == DraftChoice("model", model="smollm2-135m")
    assert parse_draft("quant:INT4") == DraftChoice("quant", scheme="int4")
    assert parse_draft("self:8").label == "self:8" and parse_draft("quant:int8").label == "quant:int8"
    for bad in ("", "self:x", "quant:int3"):
        with pytest.raises(BillionError):
            parse_draft(bad)


def test_each_draft_kind_starts_at_its_suggested_k():
    from billion.spec.request import RaceRequest, suggested_k

    # lookup and quant drafts choose their own length each round: k is their ceiling
    assert suggested_k("prompt-lookup") == suggested_k("quant:int8") == suggested_k("QUANT:int4") == 10
    assert suggested_k("self:8") == suggested_k("smollm2-135m") == 4
    assert suggested_k("quant:int3") == 4  # a name the parser refuses: the plain default
    assert RaceRequest("hi").schedule.k == suggested_k(RaceRequest("hi").draft)
    parser = argparse.ArgumentParser()
    race_command.register(parser.add_subparsers())
    for draft, k in (("quant:int8", 10), ("self:8", 4)):
        assert race_command.request_from(parser.parse_args(["race", "--draft", draft, "hi"])).schedule.k == k
    assert race_command.request_from(parser.parse_args(["race", "--draft", "quant:int8", "--k", "3", "hi"])).schedule.k == 3


def test_first_difference():
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert first_difference([1, 2], [1, 2, 3]) == 2


def test_prompt_lookup_race_is_lossless_and_matches_hf(target):
    result = run_race(target, "prompt-lookup", 4, GREEDY, MESSAGES, reference=True)
    assert result.lossless is True and result.first_difference is None
    assert result.speculative.token_ids == result.plain.token_ids
    assert result.reference is not None and result.reference.token_ids == result.plain.token_ids
    assert result.reference.method == "prompt_lookup_num_tokens=4"
    assert result.speedup > 0 and result.wall_speedup > 0
    assert result.draft == "prompt lookup" and result.prompt_tokens > 0
    assert result.verdict == "identical" and result.divergence is None
    # The verify forward's measured cost, in plain steps, and the prediction that uses it.
    assert result.verify_cost_ratio > 0 and result.predicted_speedup_measured > 0


def test_model_and_self_drafts_race_losslessly(target, tiny_dir, models):
    itself = run_race(target, str(tiny_dir), KSchedule(3), GREEDY, MESSAGES, reference=True, warmup=False,
                      models=models)
    assert itself.lossless and itself.speculative.stats.acceptance_rate == 1.0
    assert itself.reference is not None and itself.reference.token_ids == itself.plain.token_ids
    shallow = run_race(target, "self:1", KSchedule(2, dynamic=True), GREEDY, MESSAGES, warmup=False)
    assert shallow.lossless and shallow.draft == "self:1"


def test_sampling_race_has_no_lossless_verdict(target):
    settings = SamplingSettings(temperature=0.8, top_p=0.9, max_new_tokens=12, seed=3)
    result = run_race(target, "prompt-lookup", 3, settings, MESSAGES, warmup=False)
    assert result.lossless is None and result.first_difference is None
    assert 0 < len(result.speculative.token_ids) <= 12


def test_k_sweep_reports_measured_and_predicted(target):
    points = k_sweep(target, "prompt-lookup", GREEDY, MESSAGES, ks=(1, 3), warmup=False)
    assert [p.k for p in points] == [1, 3]
    assert all(p.identical for p in points), points
    assert all(p.measured_speedup > 0 and p.predicted_speedup > 0 for p in points), points
    # fix 6: repeats give a median inside its range, and the table shows the range
    assert all(p.repeats == 3 and p.low <= p.measured_speedup <= p.high for p in points), points
    from billion.ui.race_render import sweep_markdown
    assert f"{points[0].low:.2f}–{points[0].high:.2f}×" in sweep_markdown(points)


def test_sweep_table_says_when_timings_are_noisy():
    from billion.spec.race import SweepPoint
    from billion.ui.race_render import sweep_figure, sweep_markdown

    points = [SweepPoint(1, 2.0, 1.5, 0.5, 1.5, 0.1, True, low=0.5, high=9.0, repeats=3,
                         note="the speedups vary by 425%")]
    assert "Noisy timings" in sweep_markdown(points) and "425%" in sweep_markdown(points)
    assert sweep_figure(points).axes[0].get_ylim()[1] >= 9.0  # the top of the range is not clipped


@pytest.mark.parametrize("k", [0, -1, 17])
def test_bad_k_is_refused(target, k):
    with pytest.raises(BillionError, match="k must be"):
        run_race(target, "prompt-lookup", k, GREEDY, MESSAGES)


def test_bad_self_layers_are_refused(target):
    with pytest.raises(BillionError, match="self:N"):
        run_race(target, "self:2", 4, GREEDY, MESSAGES)  # the tiny target has 2 layers


def test_larger_draft_races_with_a_note_that_it_cannot_pay(target, tokenizer, tmp_path, models):
    bigger = save_model(tmp_path / "bigger", tokenizer, layers=4)
    result = run_race(target, bigger, 4, GREEDY, MESSAGES, warmup=False, models=models)
    assert result.lossless
    assert any("cannot pay off" in note for note in result.notes), result.notes


def test_draft_with_another_tokenizer_drafts_through_text(target, tmp_path, models):
    other = save_model(tmp_path / "other-tokenizer", build_tokenizer(vocab_size=300), layers=1)
    result = run_race(target, other, 4, GREEDY, MESSAGES, reference=True, warmup=False, models=models)
    assert result.lossless and result.draft.endswith("(via text)")
    assert any("another tokenizer" in note for note in result.notes), result.notes
    # HF's universal assisted generation, with the same draft model and both tokenizers.
    assert result.reference is not None and "assistant_tokenizer" in result.reference.method
    assert result.reference.token_ids == result.plain.token_ids


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_quantized_self_draft_races_losslessly(target, scheme):
    result = run_race(target, f"quant:{scheme}", 4, GREEDY, MESSAGES, reference=True, warmup=False)
    assert result.lossless and result.draft == f"quant:{scheme}"
    assert result.speculative.stats.drafted > 0
    assert result.reference is not None and result.reference.token_ids == result.plain.token_ids


def test_prompt_longer_than_context_is_refused(target):
    long = [{"role": "user", "content": "Paris is in France. " * 400}]
    with pytest.raises(BillionError, match="context"):
        run_race(target, "prompt-lookup", 4, GREEDY, long)


def test_cli_prints_figures_and_the_lossless_verdict(tiny_dir, capsys, ctx):
    parser = argparse.ArgumentParser()
    race_command.register(parser.add_subparsers())
    args = parser.parse_args(["race", "--target", str(tiny_dir), "--draft", "prompt-lookup", "--k", "3",
                              "--max-new-tokens", "12", "--reference", MESSAGES[0]["content"]])
    assert args.func(args, ctx) == 0
    out = capsys.readouterr().out
    for expected in ("plain       :", "speculative :", "acceptance  :", "verify cost :", "speedup     :",
                     "lossless    : yes", "HF assisted : prompt_lookup_num_tokens=3"):
        assert expected in out


def test_cli_races_the_quantized_self_draft(tiny_dir, capsys, ctx):
    parser = argparse.ArgumentParser()
    race_command.register(parser.add_subparsers())
    args = parser.parse_args(["race", "--target", str(tiny_dir), "--draft", "quant:int4", "--k", "3",
                              "--max-new-tokens", "12", "--no-warmup", MESSAGES[0]["content"]])
    assert args.func(args, ctx) == 0
    out = capsys.readouterr().out
    assert "draft quant:int4" in out and "lossless    : yes" in out


def test_a_race_keeps_target_and_draft_while_another_session_evicts(tiny_dir, tokenizer, tmp_path, models):
    from billion.core.loading import LoadOptions

    draft_dir = save_model(tmp_path / "draft", tokenizer, layers=1)
    reference = run_race(models.load(str(tiny_dir)), draft_dir, 3, GREEDY, MESSAGES, warmup=False,
                         models=models)
    draft_options = LoadOptions(device=str(models.load(str(tiny_dir)).device))
    cache = budget_for(models.load(str(tiny_dir)), models.load(draft_dir, draft_options))
    evictor = Evictor(cache, str(tiny_dir), LoadOptions(dtype="fp32", device="cpu"))
    kept = []

    def progress(step: str) -> None:
        if step == "plain decoding":  # target and draft loaded (the cache holds just them), racing
            held = cache.loaded()
            evictor.evict_now()
            kept.extend([len(held)] + [cached(cache, m) for m in held])

    def race():
        with cache.lease(str(tiny_dir)) as target:  # as the race tab and the CLI hold the target
            return run_race(target, draft_dir, 3, GREEDY, MESSAGES, warmup=False, models=cache,
                            progress=progress)

    result = in_thread(race)
    evictor.join()
    assert kept == [2, True, True] and evictor.calls == 1
    assert result.lossless and result.speculative.token_ids == reference.speculative.token_ids
    assert cache.in_use() == [] and cache.used_bytes() <= cache.budget_bytes
