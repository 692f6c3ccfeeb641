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


def mean_defined(values: np.ndarray) -> float:
    """Mean over users that have a value (NaN when none do)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")
