"""Ratings against battles simulated under a known Bradley-Terry model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from billion.core.errors import BillionError
from billion.arena.ratings import (ANCHOR, battle_count_matrix, bradley_terry, compute_ratings,
                             online_elo, overlap_ranks, win_probability, win_rate_matrix)

TRUE = {"alpha": 1130.0, "bravo": 1040.0, "charlie": 970.0, "delta": 860.0}


def simulate(true: dict[str, float], n: int, seed: int, tie_prob: float = 0.0) -> pd.DataFrame:
    """n battles between random pairs; a tie with tie_prob, else the winner drawn from BT odds."""
    rng = np.random.default_rng(seed)
    names = list(true)
    rows = []
    for _ in range(n):
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = names[i], names[j]
        if rng.random() < tie_prob:
            winner = "tie" if rng.random() < 0.5 else "tie (bothbad)"
        else:
            winner = "model_a" if rng.random() < win_probability(true[a], true[b]) else "model_b"
        rows.append((a, b, winner, False))
    return pd.DataFrame(rows, columns=["model_a", "model_b", "winner", "flagged"])


def centred(true: dict[str, float]) -> dict[str, float]:
    mean = sum(true.values()) / len(true)
    return {m: r - mean + ANCHOR for m, r in true.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_true_order(seed):
    table = compute_ratings(simulate(TRUE, 2000, seed), bootstrap_rounds=50, seed=seed)
    assert table.models == tuple(sorted(TRUE, key=TRUE.get, reverse=True))
    assert table.n_battles == 2000
    assert math.isclose(np.mean([r.rating for r in table.ratings]), ANCHOR, abs_tol=1e-6)


def test_intervals_cover_true_ratings():
    truth = centred(TRUE)
    covered = total = 0
    widths = []
    for rep in range(10):
        table = compute_ratings(simulate(TRUE, 2000, 100 + rep), bootstrap_rounds=100, seed=rep)
        for r in table.ratings:
            covered += r.ci_low <= truth[r.model] <= r.ci_high
            total += 1
            widths.append(r.ci_high - r.ci_low)
    assert covered / total >= 0.8, f"95% intervals covered the truth only {covered}/{total} times"
    # Intervals must also be informative: ~1000 battles per model pin a rating to tens of points.
    assert 10 < np.median(widths) < 120


def test_ties_count_half_a_win():
    # Two models: the fit must reproduce the observed score, (wins + ties / 2) / battles.
    rows = ([("x", "y", "model_a")] * 30 + [("x", "y", "model_b")] * 10 + [("y", "x", "tie")] * 14
            + [("x", "y", "tie (bothbad)")] * 6)
    df = pd.DataFrame(rows, columns=["model_a", "model_b", "winner"])
    ratings = bradley_terry(df)
    observed = (30 + 10) / 60
    assert win_probability(ratings["x"], ratings["y"]) == pytest.approx(observed, abs=2e-3)
    assert win_rate_matrix(df).at["x", "y"] == pytest.approx(observed)


def test_only_ties_give_equal_ratings():
    df = simulate(TRUE, 400, 3, tie_prob=1.0)
    ratings = bradley_terry(df)
    assert np.allclose(ratings.to_numpy(), ANCHOR, atol=1e-3)


def test_ties_in_simulation_keep_order():
    table = compute_ratings(simulate(TRUE, 2000, 4, tie_prob=0.3), bootstrap_rounds=30)
    assert table.models == tuple(sorted(TRUE, key=TRUE.get, reverse=True))


def test_flagged_battles_are_excluded():
    clean = simulate(TRUE, 1000, 5)
    # Flagged battles where the weakest always beats the strongest would flip them if counted.
    leaked = pd.DataFrame([("delta", "alpha", "model_a", True)] * 2000, columns=clean.columns)
    both = pd.concat([clean, leaked], ignore_index=True)
    with_flags = compute_ratings(both, bootstrap_rounds=20)
    without = compute_ratings(clean, bootstrap_rounds=20)
    assert [r.rating for r in with_flags.ratings] == pytest.approx([r.rating for r in without.ratings])
    assert with_flags.n_flagged == 2000 and with_flags.n_battles == 1000
    assert with_flags.get("alpha").votes == without.get("alpha").votes


def test_unvoted_rows_ignored_and_bad_winner_rejected():
    df = pd.DataFrame({"model_a": ["x", "x", "x"], "model_b": ["y", "y", "y"],
                       "winner": ["model_a", None, "model_b"]})
    assert compute_ratings(df, bootstrap_rounds=10).n_battles == 2
    df.loc[1, "winner"] = "left"
    with pytest.raises(BillionError, match="Unknown winner"):
        compute_ratings(df)


def test_never_winning_model_gets_finite_lowest_rating():
    df = pd.DataFrame([("x", "y", "model_a")] * 5 + [("y", "z", "tie")] * 5,
                      columns=["model_a", "model_b", "winner"])
    table = compute_ratings(df, bootstrap_rounds=20)
    assert all(math.isfinite(v) for r in table.ratings for v in (r.rating, r.ci_low, r.ci_high))
    assert table.models[0] == "x"


def test_overlap_ranks():
    low = pd.Series({"a": 1100.0, "b": 1050.0, "c": 900.0})
    high = pd.Series({"a": 1200.0, "b": 1150.0, "c": 1000.0})
    # a and b overlap: both rank 1; both lie wholly above c.
    assert overlap_ranks(low, high).to_dict() == {"a": 1, "b": 1, "c": 3}


def test_online_elo_one_battle_and_order():
    one = pd.DataFrame([("x", "y", "model_a")], columns=["model_a", "model_b", "winner"])
    elo = online_elo(one, k=16)
    assert elo["x"] == pytest.approx(1008) and elo["y"] == pytest.approx(992)
    table = compute_ratings(simulate(TRUE, 2000, 6), bootstrap_rounds=20)
    assert table.get("alpha").elo > table.get("delta").elo


def test_matrices_and_table_fields():
    df = simulate(TRUE, 600, 7, tie_prob=0.2)
    counts = battle_count_matrix(df)
    wins = win_rate_matrix(df)
    assert (counts.to_numpy() == counts.T.to_numpy()).all()
    assert counts.to_numpy().sum() == 2 * len(df)
    off_diagonal = ~np.eye(len(TRUE), dtype=bool)
    assert np.allclose((wins + wins.T).to_numpy()[off_diagonal], 1.0)
    table = compute_ratings(df, bootstrap_rounds=20)
    for r in table.ratings:
        played = df[(df.model_a == r.model) | (df.model_b == r.model)]
        score = ((played.model_a == r.model) & (played.winner == "model_a")).sum() \
            + ((played.model_b == r.model) & (played.winner == "model_b")).sum() \
            + 0.5 * played.winner.str.startswith("tie").sum()
        assert r.votes == len(played)
        assert r.win_rate == pytest.approx(score / len(played))
        assert r.ci_low <= r.rating <= r.ci_high
    frame = table.to_frame()
    assert list(frame.columns) == ["model", "rating", "ci_low", "ci_high", "rank", "votes",
                                   "win_rate", "elo"]


def test_bootstrap_is_seeded():
    df = simulate(TRUE, 500, 8)
    first = compute_ratings(df, bootstrap_rounds=30, seed=11).to_frame()
    again = compute_ratings(df, bootstrap_rounds=30, seed=11).to_frame()
    pd.testing.assert_frame_equal(first, again)


def test_empty_table():
    empty = pd.DataFrame(columns=["model_a", "model_b", "winner", "flagged"])
    table = compute_ratings(empty)
    assert table.ratings == () and table.n_battles == 0


def test_fit_matches_a_generic_optimizer():
    # Independent maximum likelihood: a generic optimizer (torch's L-BFGS, float64) on the plain
    # BT log-likelihood (ties as half wins).
    df = simulate(TRUE, 800, 9, tie_prob=0.2)
    names = sorted(TRUE)
    ia = torch.tensor(df.model_a.map(names.index).to_numpy())
    ib = torch.tensor(df.model_b.map(names.index).to_numpy())
    y = torch.tensor(df.winner.map({"model_a": 1.0, "model_b": 0.0, "tie": 0.5,
                                    "tie (bothbad)": 0.5}).to_numpy(), dtype=torch.float64)
    theta = torch.zeros(len(names), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([theta], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-14,
                                  line_search_fn="strong_wolfe")

    def nll():
        optimizer.zero_grad()
        d = theta[ia] - theta[ib]
        loss = (y * F.softplus(-d) + (1 - y) * F.softplus(d)).sum()
        loss.backward()
        return loss

    optimizer.step(nll)
    theta = theta.detach().numpy()
    expected = ANCHOR + 400 / math.log(10) * (theta - theta.mean())
    fitted = bradley_terry(df)
    assert [fitted[m] for m in names] == pytest.approx(list(expected), abs=0.5)


def test_one_vote_shows_needs_more_votes_not_a_zero_width_interval():
    """Fix 7: "1340 to 1340" after one vote read as certainty."""
    from billion.arena.ratings import MIN_VOTES
    from billion.ui.arena_ratings import ratings_figure, ratings_frame

    one = pd.DataFrame([("x", "y", "model_a")], columns=["model_a", "model_b", "winner"])
    table = compute_ratings(one, bootstrap_rounds=20)
    shown = ratings_frame(table)
    assert shown["95% CI"].str.startswith("needs more votes (1 of").all()
    labels = [t.get_text() for t in ratings_figure(table).axes[0].get_legend().get_texts()]
    assert labels == [f"needs more votes (< {MIN_VOTES})"]
    many = simulate({"x": 0.0, "y": 200.0}, 200, seed=3)
    shown = ratings_frame(compute_ratings(many, bootstrap_rounds=20))
    for text in shown["95% CI"]:
        low, high = (float(v) for v in text.split(" to "))
        assert high - low >= 1
