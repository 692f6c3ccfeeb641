"""The ranking score of a show: presence probability and predicted rating combined (one definition).

``score = p^w * max(r + 1, 0.001)^(1 - w)`` with ``p`` the softmax presence probability, ``r``
the predicted normalised rating and ``w`` the rating weight. It is computed as its logarithm,
``w * log p + (1 - w) * log(max(r + 1, 0.001))``: the same order, and no underflow of tiny
probabilities over a large corpus.

``w = 1`` ranks by presence alone, which is what "will the user watch it" (binary held-out
relevance) rewards; smaller ``w`` favours shows the user is predicted to rate highly. The default
is chosen on validation users (see README, quality figures).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

RATING_FLOOR = 0.001  # keeps the rating factor positive for very low predicted ratings
DEFAULT_RATING_WEIGHT = 1.0


def log_ranking_score(log_presence, ratings, rating_weight: float):
    """log of ``p^w * max(r + 1, 0.001)^(1 - w)``; works on numpy and jax arrays alike. [..., C]"""
    xp = jnp if isinstance(log_presence, jax.Array) else np
    return rating_weight * log_presence + (1.0 - rating_weight) * xp.log(xp.maximum(ratings + 1.0, RATING_FLOOR))
