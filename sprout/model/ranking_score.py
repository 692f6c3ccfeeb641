"""The ranking score of a show: "will watch" and "will like" combined (one definition).

``score = p · q^(1 - w)``: ``p`` the calibrated presence probability (the chance that the user's
next show is this one), ``q`` the chance that they rate it at least their own mean
(`sprout.model.rating_path.log_like`), ``w`` the rating weight. ``w = 1`` ranks by presence
alone (what binary "will watch" relevance rewards); ``w = 0`` by the chance that the user watches
the show *and* likes it. Every weight in between is still anchored on ``p``, so no weight ranks
obscure shows merely for a high predicted score. It is computed as its logarithm,
``log p + (1 - w) · log q``: the same order, and no underflow over a large corpus. The default
weight is chosen on validation users (see README, quality figures).
"""

from __future__ import annotations

DEFAULT_RATING_WEIGHT = 1.0


def log_ranking_score(log_presence, log_like, rating_weight: float):
    """log of ``p · q^(1 - w)`` from log p and log q [..., C] (numpy or jax arrays alike)."""
    if rating_weight >= 1.0:
        return log_presence
    return log_presence + (1.0 - rating_weight) * log_like

