"""The round's cost model: Leviathan's formula, break-even acceptance, the online verify-cost fit,
the choice of draft length, and the measured (k+1)-token forward against a 1-token step."""

from __future__ import annotations

import pytest

from billion.spec.cost import (VerifyCost, best_draft_length, break_even_alpha, expected_tokens,
                               expected_tokens_per_round, measure_forward_costs, predicted_speedup)
from tiny_models import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")


def test_leviathan_formula():
    assert expected_tokens_per_round(1.0, 4) == 5
    assert expected_tokens_per_round(0.5, 2) == pytest.approx(1.75)
    assert expected_tokens_per_round(0.0, 4) == 1
    assert predicted_speedup(0.5, 2, 0.25) == pytest.approx(1.75 / 1.5)
    # A verify forward costing 1.5 steps instead of 1 lowers the prediction accordingly.
    assert predicted_speedup(0.5, 2, 0.25, verify_cost=1.5) == pytest.approx(1.75 / 2.0)


def test_expected_tokens_matches_the_geometric_formula():
    assert expected_tokens([0.5, 0.5]) == pytest.approx([1, 1.5, 1.75])
    assert expected_tokens([0.8] * 4)[-1] == pytest.approx(expected_tokens_per_round(0.8, 4))


def test_break_even_alpha():
    alpha = break_even_alpha(4, 0.3, 1.2)
    assert alpha is not None and 0 < alpha < 1
    assert predicted_speedup(alpha, 4, 0.3, 1.2) == pytest.approx(1.0, abs=1e-6)
    assert break_even_alpha(4, 1.0, 1.0) is None  # each draft token costs a target forward
    assert break_even_alpha(4, 1.2, 1.0) is None


def test_verify_cost_recovers_a_measured_line():
    cost = VerifyCost(prior_slope=0.1)
    assert cost.ratio(11) == pytest.approx(2.0) and cost.one_step_s() is None  # the prior alone
    for tokens in (1, 3, 5, 9, 11, 17) * 10:
        cost.observe(tokens, 0.05 * (1 + 0.3 * (tokens - 1)))  # each extra token costs 0.3 steps
    # Four prior pseudo-points among 60 measurements pull the fit a little towards the prior.
    assert cost.slope() == pytest.approx(0.3, rel=0.1)
    assert cost.one_step_s() == pytest.approx(0.05, rel=0.1)


def test_verify_cost_from_one_size_only_keeps_the_prior_slope_at_the_data_scale():
    cost = VerifyCost(prior_slope=0.1)
    for _ in range(5):
        cost.observe(5, 0.14)
    assert cost.slope() == pytest.approx(0.1, rel=0.05)
    assert cost.one_step_s() == pytest.approx(0.1, rel=0.05)  # 0.14 / (1 + 0.1 * 4)


def test_draft_length_follows_acceptance_and_cost():
    cheap, dear = VerifyCost(prior_slope=0.02), VerifyCost(prior_slope=1.0)
    assert best_draft_length([0.95] * 10, cheap)[0] == 10
    assert best_draft_length([0.1] * 10, cheap)[0] <= 1
    assert best_draft_length([0.6] * 10, dear)[0] == 0  # extra tokens cost a step each: never worth it
    m, rate = best_draft_length([0.9] * 10, cheap, draft_step_cost=0.5)
    assert 1 <= m < 10 and rate > 1


def test_measured_forward_costs_on_a_real_model():
    model = tiny_llama(64, seed=0, layers=2)
    costs = measure_forward_costs(model, sizes=(1, 4, 16), context=32, repeats=3)
    assert [c.tokens for c in costs] == [1, 4, 16]
    assert costs[0].ratio == 1.0 and all(c.seconds > 0 and c.ratio > 0 for c in costs)
