"""Leave-one-out explanations from the held-out scores (docs/design.md §6); pure numpy.

Given the candidates' scores with the whole profile (``base [K]``) and with each entry held out
(``held [n, K]``), the drop ``base - held`` says how much a candidate owes to an entry:

- contributors of a candidate: the (up to) 3 entries whose removal lowers its score most, keeping
  only real drops (> 0);
- impact of an entry: Σ |drop| over the first 50 candidates, the top-50 recommendations;
- surprise of a rated entry: |actual score − the score predicted with that entry held out|, on 1..10.

Ties break towards the earlier profile entry, so the answers are deterministic.
"""

from __future__ import annotations

import numpy as np

CONTRIBUTORS = 3
IMPACT_CANDIDATES = 50
TOP_ENTRIES = 10


def score_drops(base: np.ndarray, held: np.ndarray) -> np.ndarray:
    """How much holding each entry out lowers each candidate's score: [K], [n, K] -> [n, K]."""
    return base[None, :] - held


def top_contributors(drops: np.ndarray, count: int = CONTRIBUTORS) -> list[list[tuple[int, float]]]:
    """Per candidate, up to ``count`` (entry, drop) pairs with the largest positive drops."""
    contributors = []
    for column in drops.T:  # [n] drops of one candidate
        order = np.lexsort((np.arange(len(column)), -column))[:count]
        contributors.append([(int(j), float(column[j])) for j in order if column[j] > 0])
    return contributors


def entry_impacts(drops: np.ndarray, candidates: int = IMPACT_CANDIDATES) -> np.ndarray:
    """Σ |drop| over the first ``candidates`` candidates: [n, K] -> [n]."""
    return np.abs(drops[:, :candidates]).sum(axis=1)


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
