"""Leave-one-out explanations from the held-out scores (docs/design.md §6); pure numpy.

Given the candidates' log scores with the whole profile (``base [K]``) and with each entry held
out (``held [n, K]``), the share ``1 − held/base`` is the part of a candidate's score it owes to an
entry (0.4: without the entry its score would be 40% lower; negative: the entry holds it back):

- contributors of a candidate: the (up to) 3 entries with the largest shares, keeping only real
  ones (> 0);
- impact of an entry: how much removing it changes the top-50 recommendations' scores, as the
  mean of ``|held − base| / max(held, base)`` (0..1: 0.1 moves them by 10% on average);
- surprise of a rated entry: |actual score − the score predicted with that entry held out|, on 1..10.

Shares are ratios of scores, so they read the same at any corpus size and need no unit.

Ties break towards the earlier profile entry, so the answers are deterministic.
"""

from __future__ import annotations

import numpy as np

CONTRIBUTORS = 3
IMPACT_CANDIDATES = 50
TOP_ENTRIES = 10


def score_shares(base: np.ndarray, held: np.ndarray) -> np.ndarray:
    """The share of each candidate's score each entry accounts for, ``1 − held/base``, from log
    scores [K] and [n, K] -> [n, K] (≤ 1; negative where removing the entry raises the score)."""
    return -np.expm1(np.asarray(held, np.float64) - np.asarray(base, np.float64)[None, :])


def top_contributors(shares: np.ndarray, count: int = CONTRIBUTORS) -> list[list[tuple[int, float]]]:
    """Per candidate, up to ``count`` (entry, share) pairs with the largest positive shares."""
    contributors = []
    for column in shares.T:  # [n] shares of one candidate
        order = np.lexsort((np.arange(len(column)), -column))[:count]
        contributors.append([(int(j), float(column[j])) for j in order if column[j] > 0])
    return contributors


def entry_impacts(base: np.ndarray, held: np.ndarray, candidates: int = IMPACT_CANDIDATES) -> np.ndarray:
    """Mean of |held − base| / max(held, base) over the first ``candidates`` candidates, from log
    scores [K] and [n, K] -> [n] in [0, 1]."""
    gap = np.abs(np.asarray(held, np.float64)[:, :candidates] - np.asarray(base, np.float64)[None, :candidates])
    return -np.expm1(-gap).mean(axis=1) if gap.shape[1] else np.zeros(len(gap))


def most_impactful(impacts: np.ndarray, count: int = TOP_ENTRIES) -> np.ndarray:
    """Entries with the largest impact, largest first: [n] -> [min(count, n)] indices."""
    return np.lexsort((np.arange(len(impacts)), -impacts))[:count]


def most_surprising(
    actual: np.ndarray, predicted: np.ndarray, rated: np.ndarray, count: int = TOP_ENTRIES
) -> np.ndarray:
    """Rated entries whose actual and held-out predicted scores differ most, largest first.

    actual / predicted [n] on 1..10, rated [n] bool -> [min(count, rated.sum())] indices.
    """
    candidates = np.flatnonzero(rated)  # [m]
    gaps = np.abs(actual[candidates] - predicted[candidates])  # [m]
    return candidates[np.lexsort((candidates, -gaps))][:count]
