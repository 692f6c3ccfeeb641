"""Ranking metrics on held-out users: pure numpy, one row per user.

Scores are dense ``[U, C]`` arrays; fold-in items must already be excluded (set to -inf) by the
caller, so they can never count as recommendations. Held-out items come as a boolean
``[U, C]`` relevance matrix. Users without held-out items are skipped (NaN rows are dropped
from means).
"""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best items per row, best first; ties broken by lower index. [U, k]"""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]  # [U, k] unordered
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)  # by score desc, then index asc
    return np.take_along_axis(part, order, axis=1)


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """hits@k / min(k, n_relevant) per user; NaN for users with nothing held out. [U]"""
    ranked = top_k(scores, k)  # [U, k]
    hits = np.take_along_axis(relevant, ranked, axis=1).sum(axis=1)
    n_relevant = relevant.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_relevant > 0, hits / np.minimum(k, n_relevant), np.nan)


def ndcg_at_k(scores: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with binary gains per user; NaN for users with nothing held out. [U]"""
    ranked = top_k(scores, k)  # [U, k]
    discounts = 1.0 / np.log2(np.arange(2, ranked.shape[1] + 2))  # [k]
    gains = np.take_along_axis(relevant, ranked, axis=1).astype(np.float64)  # [U, k]
    dcg = gains @ discounts
    n_relevant = np.minimum(relevant.sum(axis=1), ranked.shape[1])
    ideal = np.concatenate([[0.0], np.cumsum(discounts)])[n_relevant]  # [U]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_relevant > 0, dcg / ideal, np.nan)


def graded_ndcg_at_k(scores: np.ndarray, gains: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k with graded gains [U, C] (0 = not relevant) per user; NaN for users with no gain. [U]"""
    ranked = top_k(scores, k)  # [U, k]
    discounts = 1.0 / np.log2(np.arange(2, ranked.shape[1] + 2))  # [k]
    dcg = np.take_along_axis(gains, ranked, axis=1) @ discounts
    best = -np.sort(-gains, axis=1)[:, : ranked.shape[1]]  # [U, k] the ideal order
    ideal = best @ discounts
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ideal > 0, dcg / ideal, np.nan)


def mean_defined(values: np.ndarray) -> float:
    """Mean over users that have a value (NaN when none do)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def _ranked_lists(scores: np.ndarray, k: int, users: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of the chosen users and which slots hold a real candidate (not an excluded -inf). ([U', k], [U', k])"""
    if users is not None:
        scores = scores[users]
    ranked = top_k(scores, k)  # [U', k]
    real = np.take_along_axis(scores, ranked, axis=1) > -np.inf  # [U', k]
    return ranked, real


def coverage_at_k(scores: np.ndarray, k: int, users: np.ndarray | None = None) -> float:
    """Share of the corpus that appears in at least one chosen user's top-k. scores [U, C], users [U] bool"""
    ranked, real = _ranked_lists(scores, k, users)
    if ranked.size == 0:
        return float("nan")
    return float(np.unique(ranked[real]).size / scores.shape[1])


def mean_popularity_at_k(
    scores: np.ndarray, popularity: np.ndarray, k: int, users: np.ndarray | None = None
) -> float:
    """Mean over chosen users of the mean ``popularity`` [C] of their top-k items (excluded slots skipped)."""
    ranked, real = _ranked_lists(scores, k, users)
    per_slot = np.where(real, popularity[ranked], 0.0)  # [U', k]
    n_real = real.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_user = np.where(n_real > 0, per_slot.sum(axis=1) / n_real, np.nan)  # [U']
    return mean_defined(per_user)


def rating_errors(predicted: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """(MAE, RMSE) of predicted vs actual scores [m]; NaN when there is nothing to compare or a
    prediction is not finite (a broken model must not look accurate)."""
    predicted = np.asarray(predicted, np.float64)
    actual = np.asarray(actual, np.float64)
    if actual.size == 0 or not np.all(np.isfinite(predicted)):
        return float("nan"), float("nan")
    error = predicted - actual
    return float(np.abs(error).mean()), float(np.sqrt((error * error).mean()))


def paired_mae_difference_se(a: np.ndarray, b: np.ndarray, actual: np.ndarray, users: np.ndarray) -> float:
    """Standard error of MAE(a) − MAE(b) over the same rated entries [m], clustered by user (a
    user's entries are not independent draws): how far apart two MAEs on these users may be by
    chance alone. NaN with fewer than two users."""
    difference = np.abs(a - actual) - np.abs(b - actual)  # [m]
    m = len(difference)
    _, user = np.unique(users, return_inverse=True)
    n_users = int(user.max()) + 1 if m else 0
    if n_users < 2:
        return float("nan")
    residual = np.bincount(user, weights=difference - difference.mean(), minlength=n_users)  # [U'] per-user sums
    return float(np.sqrt(n_users / (n_users - 1) * (residual**2).sum()) / m)
