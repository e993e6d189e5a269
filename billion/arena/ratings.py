"""Arena ratings: pure functions over a table of battles.

Bradley-Terry by maximum likelihood on an Elo-like scale, bootstrap 95% intervals, ranks that treat
overlapping intervals as ties, online Elo for reference, and win-rate / battle-count matrices.
The method follows LMSYS (FastChat `rating_systems.py`); flagged battles never count.

Input: a DataFrame with columns model_a, model_b, winner in WINNERS, and optionally flagged (bool).
Rows with no winner (battles not voted yet) are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from billion.core.errors import BillionError
from billion.store.schema import WINNERS
# Score of model_a for each outcome; both kinds of tie count half a win each.
_SCORE_A = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}

SCALE = 400.0
BASE = 10.0
ANCHOR = 1000.0
#: Tiny ridge on log-strengths: keeps the fit finite when a model never wins (or never loses),
#: worth about 1% of one battle's information, so it leaves real ratings unchanged.
RIDGE = 0.01


@dataclass(frozen=True)
class ModelRating:
    """One model's row in the leaderboard."""

    model: str
    #: Bradley-Terry rating, Elo-like scale (400 points = 10:1 odds), mean of all models = ANCHOR
    rating: float
    #: bootstrap 95% interval of the rating
    ci_low: float
    ci_high: float
    #: 1 + number of models whose interval lies wholly above this one's (overlaps are ties)
    rank: int
    #: battles this model played that count (voted, not flagged)
    votes: int
    #: (wins + ties / 2) / votes
    win_rate: float
    #: online Elo over the same battles in vote order, for reference
    elo: float


@dataclass(frozen=True, eq=False)
class RatingTable:
    """Ratings of every model with counting battles, best first, and the pairwise matrices."""

    ratings: tuple[ModelRating, ...]
    #: row model's score against column model: (wins + ties / 2) / battles; NaN where none
    win_rates: pd.DataFrame
    #: battles between each pair (symmetric)
    battle_counts: pd.DataFrame
    n_battles: int
    #: voted battles left out because an answer leaked a model's identity
    n_flagged: int
    bootstrap_rounds: int

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(r.model for r in self.ratings)

    def get(self, model: str) -> ModelRating | None:
        return next((r for r in self.ratings if r.model == model), None)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([r.__dict__ for r in self.ratings],
                            columns=list(ModelRating.__dataclass_fields__))


def win_probability(rating_a: float, rating_b: float, scale: float = SCALE, base: float = BASE) -> float:
    """P(a beats b) under Bradley-Terry on this scale."""
    return 1.0 / (1.0 + base ** ((rating_b - rating_a) / scale))


def counting_battles(battles: pd.DataFrame) -> pd.DataFrame:
    """Voted, unflagged battles between two different models, with a numeric score_a column."""
    missing = {"model_a", "model_b", "winner"} - set(battles.columns)
    if missing:
        raise BillionError(f"Battle table lacks columns {sorted(missing)}: build it with "
                           "billion.store.store.Store.battles_frame().")
    df = battles[battles["winner"].notna()]
    unknown = set(df["winner"]) - set(WINNERS)
    if unknown:
        raise BillionError(f"Unknown winner values {sorted(map(str, unknown))}; use one of {WINNERS}.")
    if "flagged" in df.columns:
        df = df[~df["flagged"].fillna(False).astype(bool)]
    df = df[df["model_a"] != df["model_b"]]
    return df.assign(score_a=df["winner"].map(_SCORE_A).astype(float)).reset_index(drop=True)


def _matchups(df: pd.DataFrame, models: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unique (a, b, score) rows with their counts, so bootstrap can reweight instead of re-scan."""
    index = {m: i for i, m in enumerate(models)}
    a = df["model_a"].map(index).to_numpy()
    b = df["model_b"].map(index).to_numpy()
    score = df["score_a"].to_numpy()
    keys, counts = np.unique(np.stack([a, b, score * 2]), axis=1, return_counts=True)
    return keys[0].astype(int), keys[1].astype(int), keys[2] / 2.0, counts.astype(float)


def _fit_log_strengths(a: np.ndarray, b: np.ndarray, score: np.ndarray, weight: np.ndarray,
                       n_models: int, tol: float = 1e-10, max_steps: int = 100) -> np.ndarray:
    """Maximum-likelihood log-strengths theta (natural log), P(a beats b) = sigmoid(theta_a - theta_b).

    Newton's method with a backtracking line search: the ridge makes the loss strictly convex, and
    with a handful of models each step is one small linear solve (much faster than a generic optimizer,
    which matters for bootstrap).
    """

    def loss(theta: np.ndarray) -> float:
        d = theta[a] - theta[b]
        # -[y log s(d) + (1-y) log s(-d)], with logaddexp to stay finite for large |d|
        nll = weight * (score * np.logaddexp(0.0, -d) + (1.0 - score) * np.logaddexp(0.0, d))
        return float(nll.sum() + 0.5 * RIDGE * theta @ theta)

    theta = np.zeros(n_models)
    current = loss(theta)
    for _ in range(max_steps):
        p = 1.0 / (1.0 + np.exp(-(theta[a] - theta[b])))
        g = weight * (p - score)
        grad = np.bincount(a, g, n_models) - np.bincount(b, g, n_models) + RIDGE * theta
        if np.abs(grad).max() <= tol * max(1.0, weight.sum()):
            break
        h = weight * p * (1.0 - p)
        cells = n_models * n_models
        hess = (np.bincount(a * n_models + a, h, cells) + np.bincount(b * n_models + b, h, cells)
                - np.bincount(a * n_models + b, h, cells) - np.bincount(b * n_models + a, h, cells))
        step = np.linalg.solve(hess.reshape(n_models, n_models) + RIDGE * np.eye(n_models), grad)
        size = 1.0
        while size > 1e-8:
            trial = loss(theta - size * step)
            if trial <= current - 1e-4 * size * grad @ step:
                break
            size /= 2
        theta, current = theta - size * step, trial
    return theta - theta.mean()


def _to_scale(theta: np.ndarray, scale: float, base: float, anchor: float) -> np.ndarray:
    return anchor + scale * theta / math.log(base)


def bradley_terry(battles: pd.DataFrame, scale: float = SCALE, base: float = BASE,
                  anchor: float = ANCHOR) -> pd.Series:
    """Bradley-Terry ratings of every model in the counting battles, best first."""
    df = counting_battles(battles)
    models = sorted(set(df["model_a"]) | set(df["model_b"]))
    if not models:
        return pd.Series(dtype=float)
    a, b, score, weight = _matchups(df, models)
    ratings = _to_scale(_fit_log_strengths(a, b, score, weight, len(models)), scale, base, anchor)
    return pd.Series(ratings, index=models).sort_values(ascending=False)


def bootstrap_intervals(battles: pd.DataFrame, rounds: int = 200, seed: int = 0,
                        scale: float = SCALE, base: float = BASE,
                        anchor: float = ANCHOR) -> pd.DataFrame:
    """2.5% and 97.5% percentiles of ratings refit on battles resampled with replacement.

    Resampling battles is a multinomial draw over the unique matchups, so each round refits on
    reweighted counts (the same data FastChat resamples row by row).
    """
    if rounds < 2:
        raise BillionError(f"Bootstrap needs at least 2 rounds (got {rounds}).")
    df = counting_battles(battles)
    models = sorted(set(df["model_a"]) | set(df["model_b"]))
    if not models:
        return pd.DataFrame(columns=["ci_low", "ci_high"], dtype=float)
    a, b, score, weight = _matchups(df, models)
    rng = np.random.default_rng(seed)
    n = int(weight.sum())
    draws = rng.multinomial(n, weight / n, size=rounds).astype(float)
    samples = np.array([_fit_log_strengths(a, b, score, w, len(models)) for w in draws])
    samples = _to_scale(samples, scale, base, anchor)
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    return pd.DataFrame({"ci_low": low, "ci_high": high}, index=models)


def online_elo(battles: pd.DataFrame, k: float = 16.0, scale: float = SCALE, base: float = BASE,
               anchor: float = ANCHOR) -> pd.Series:
    """Sequential Elo in row order (vote order). K=16 rather than LMSYS's 4: our arenas are small."""
    df = counting_battles(battles)
    elo: dict[str, float] = {}
    for model_a, model_b, score_a in df[["model_a", "model_b", "score_a"]].itertuples(index=False):
        ra, rb = elo.get(model_a, anchor), elo.get(model_b, anchor)
        expected_a = win_probability(ra, rb, scale, base)
        elo[model_a] = ra + k * (score_a - expected_a)
        elo[model_b] = rb - k * (score_a - expected_a)
    return pd.Series(elo, dtype=float).sort_values(ascending=False)


def battle_count_matrix(battles: pd.DataFrame) -> pd.DataFrame:
    """Counting battles between each pair of models, symmetric, zero on the diagonal."""
    df = counting_battles(battles)
    models = sorted(set(df["model_a"]) | set(df["model_b"]))
    counts = pd.crosstab(df["model_a"], df["model_b"]).reindex(index=models, columns=models, fill_value=0)
    return (counts + counts.T).astype(int).rename_axis(index=None, columns=None)


def win_rate_matrix(battles: pd.DataFrame) -> pd.DataFrame:
    """Row model's score against column model, (wins + ties / 2) / battles; NaN where they never met."""
    df = counting_battles(battles)
    models = sorted(set(df["model_a"]) | set(df["model_b"]))
    # Each battle seen from both seats, so one pivot gives every (row, column) pair.
    both = pd.concat([
        pd.DataFrame({"row": df["model_a"], "col": df["model_b"], "score": df["score_a"]}),
        pd.DataFrame({"row": df["model_b"], "col": df["model_a"], "score": 1.0 - df["score_a"]}),
    ])
    return both.pivot_table(index="row", columns="col", values="score", aggfunc="mean") \
        .reindex(index=models, columns=models).rename_axis(index=None, columns=None)


def overlap_ranks(ci_low: pd.Series, ci_high: pd.Series) -> pd.Series:
    """Rank = 1 + number of models whose lower bound is above this one's upper bound (LMSYS)."""
    return pd.Series({m: 1 + int((ci_low > ci_high[m]).sum()) for m in ci_low.index}, dtype=int)


def compute_ratings(battles: pd.DataFrame, bootstrap_rounds: int = 200, seed: int = 0,
                    scale: float = SCALE, base: float = BASE, anchor: float = ANCHOR,
                    elo_k: float = 16.0) -> RatingTable:
    """The whole leaderboard from a battle table (see module docstring for the columns)."""
    df = counting_battles(battles)
    voted = battles[battles["winner"].notna()]
    n_flagged = int(voted["flagged"].fillna(False).astype(bool).sum()) if "flagged" in voted else 0
    counts = battle_count_matrix(df)
    wins = win_rate_matrix(df)
    if df.empty:
        return RatingTable((), wins, counts, 0, n_flagged, bootstrap_rounds)
    rating = bradley_terry(df, scale, base, anchor)
    ci = bootstrap_intervals(df, bootstrap_rounds, seed, scale, base, anchor)
    ranks = overlap_ranks(ci["ci_low"], ci["ci_high"])
    elo = online_elo(df, elo_k, scale, base, anchor)
    votes = counts.sum(axis=1)
    score = pd.concat([df.groupby("model_a")["score_a"].sum(),
                       (1.0 - df["score_a"]).groupby(df["model_b"]).sum()]).groupby(level=0).sum()
    rows = tuple(
        ModelRating(model=m, rating=float(rating[m]), ci_low=float(ci.at[m, "ci_low"]),
                    ci_high=float(ci.at[m, "ci_high"]), rank=int(ranks[m]), votes=int(votes[m]),
                    win_rate=float(score[m] / votes[m]), elo=float(elo[m]))
        for m in rating.index
    )
    return RatingTable(rows, wins, counts, len(df), n_flagged, bootstrap_rounds)
