"""Ranking scores, the niche boost and candidate selection (docs/design.md §6); pure numpy.

The score of a show is ``p · q^(1 - w)`` (``p`` presence probability, ``q`` the chance the user
likes it, ``w`` the rating weight; `sprout.model.ranking_score`), multiplied by the niche boost
``1 + eff * log1p(p / pop)`` where ``pop`` is the show's share of all list rows. Scores are
computed as logarithms (tiny probabilities over a large corpus do not underflow) and exponentiated
only for display.
"""

from __future__ import annotations

import math

import numpy as np

from sprout.model.ranking_score import log_ranking_score

# Past 0.5 the boost strength grows exponentially so that 1.0 reaches deep into the long tail.
NICHE_KNEE = 0.5
NICHE_GROWTH = 4.62


def niche_strength(boost: float) -> float:
    """``eff``: the boost itself up to 0.5, then ``0.5 + (f - 0.5) * e^{4.62 (f - 0.5)}``."""
    if boost <= NICHE_KNEE:
        return float(boost)
    return NICHE_KNEE + (boost - NICHE_KNEE) * math.exp(NICHE_GROWTH * (boost - NICHE_KNEE))


def popularity_shares(counts: np.ndarray) -> np.ndarray:
    """Each show's share of all list rows: counts [C] -> pop [C] (floored so no show has 0)."""
    counts = np.asarray(counts, np.float64)
    total = max(float(counts.sum()), 1.0)
    return np.maximum(counts, 1.0) / total


def log_scores(
    log_presence: np.ndarray, log_like: np.ndarray, rating_weight: float, popularity: np.ndarray, niche_boost: float
) -> np.ndarray:
    """log of the boosted ranking score; log_presence/log_like [..., K], popularity [K] -> [..., K]."""
    log_presence = np.asarray(log_presence, np.float64)
    scores = log_ranking_score(log_presence, np.asarray(log_like, np.float64), rating_weight)
    strength = niche_strength(niche_boost)
    if strength == 0.0:
        return scores
    boost = strength * np.log1p(np.exp(log_presence) / popularity)  # [..., K]
    return scores + np.log1p(boost)


def top_candidates(scores: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best allowed scores, best first (ties: lower index first).

    scores [C], allowed [C] bool -> [min(k, allowed.sum())] int64.
    """
    pool = np.flatnonzero(allowed)  # [A]
    if len(pool) > k:
        # argpartition finds the k-th best; keep every score at least that good so ties are exact.
        threshold = np.partition(scores[pool], len(pool) - k)[len(pool) - k]
        pool = pool[scores[pool] >= threshold]
    order = np.lexsort((pool, -scores[pool]))
    return pool[order][:k]
