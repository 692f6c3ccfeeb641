"""One interface for everything scored on held-out users: models and baselines alike.

An evaluator turns a `HeldOutUsers` into a flat ``{metric name: float}`` dict with the same
names for all, so the gate, reports and DuckDB rows never special-case who produced them.
A ranking-only evaluator reports NaN for rating metrics and the other way round.

Ranking scores are dense ``[U, C]`` (larger is better); fold-in items are set to -inf here, so
no evaluator has to remember to. ``rated_ndcg@100`` rewards "will watch" and "will like" together: a held-out show's gain is its
score / 10 (an unrated one counts at the user's mean), so ranking the shows the user rated highly
first scores best. ``mean_popularity@20`` is a popularity *share*: the fraction of
training users who listed an item, averaged over each user's top-20 and then over users, so it
compares across snapshots of different sizes.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from sprout.evaluation.held_out import HeldOutUsers
from sprout.evaluation.metrics import (
    coverage_at_k,
    graded_ndcg_at_k,
    mean_defined,
    mean_popularity_at_k,
    ndcg_at_k,
    rating_errors,
    recall_at_k,
)

RANKING_METRICS = ("recall@20", "recall@50", "ndcg@100", "rated_ndcg@100", "coverage@20", "mean_popularity@20")
RATING_METRICS = ("rating_mae", "rating_rmse")
METRIC_NAMES = RANKING_METRICS + RATING_METRICS


class Evaluator(Protocol):
    """Something that can be scored on held-out users."""

    name: str

    def evaluate(self, users: HeldOutUsers) -> dict[str, float]:
        """Metrics on ``users``: at least every name in `METRIC_NAMES` (NaN where it does not apply)."""
        ...


def exclude_fold_in(scores: np.ndarray, users: HeldOutUsers) -> np.ndarray:
    """Scores [U, C] as float64 with fold-in items at -inf and non-finite scores at -inf (last)."""
    scores = np.asarray(scores, np.float64)
    return np.where(users.fold_in | ~np.isfinite(scores), -np.inf, scores)


def ranking_metrics(scores: np.ndarray, users: HeldOutUsers) -> dict[str, float]:
    """Recall@20/50, NDCG@100, coverage@20 and mean popularity share @20 of scores [U, C]."""
    ranked = exclude_fold_in(scores, users)
    evaluated = users.evaluated  # [U] users without held-out items are skipped everywhere
    popularity_share = users.popularity / max(users.n_train_users, 1)  # [C]
    return {
        "recall@20": mean_defined(recall_at_k(ranked, users.held_out, 20)),
        "recall@50": mean_defined(recall_at_k(ranked, users.held_out, 50)),
        "ndcg@100": mean_defined(ndcg_at_k(ranked, users.held_out, 100)),
        "rated_ndcg@100": mean_defined(graded_ndcg_at_k(ranked, users.held_out_gains, 100)),
        "coverage@20": coverage_at_k(ranked, 20, evaluated),
        "mean_popularity@20": mean_popularity_at_k(ranked, popularity_share, 20, evaluated),
    }


def rating_metrics(predicted: np.ndarray, users: HeldOutUsers) -> dict[str, float]:
    """MAE and RMSE on the 1..10 scale of predictions [m] for the held-out rated entries."""
    mae, rmse = rating_errors(predicted, users.rated_scores)
    return {"rating_mae": mae, "rating_rmse": rmse}


def no_ranking() -> dict[str, float]:
    return dict.fromkeys(RANKING_METRICS, float("nan"))


def no_ratings() -> dict[str, float]:
    return dict.fromkeys(RATING_METRICS, float("nan"))
