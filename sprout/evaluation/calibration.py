"""Do the presence probabilities mean what they say? Calibration on held-out users; pure numpy.

A served probability is the chance that the user's next show is this one, over the shows not
already in their profile (it sums to 1 over them). Each held-out entry of a user is read as one
such draw, so a user with ``n`` held-out entries is expected to have ``n · Σ_{top K} p`` of them
in their top K. The ratio of what happens to what is expected is 1 for calibrated
probabilities; below 1 they are overconfident, above 1 too timid (the uncalibrated model's was 2).

`reliability` bins every top-K candidate by its predicted chance of being held out,
``min(1, n · p)``, against the share of them that were: the points of a reliability plot.
"""

from __future__ import annotations

import numpy as np

from sprout.evaluation.metrics import top_k

CALIBRATION_K = 100


def candidate_log_probabilities(log_scores: np.ndarray, fold_in: np.ndarray) -> np.ndarray:
    """Log probabilities renormalised over each user's non-profile shows: [U, C] -> [U, C]
    (profile shows at -inf). ``log_scores`` are log presence probabilities or any logits."""
    masked = np.where(fold_in, -np.inf, np.asarray(log_scores, np.float64))  # [U, C]
    peak = masked.max(axis=1, keepdims=True)
    return masked - (peak + np.log(np.exp(masked - peak).sum(axis=1, keepdims=True)))


def presence_calibration(
    log_presence: np.ndarray, fold_in: np.ndarray, held_out: np.ndarray, k: int = CALIBRATION_K
) -> dict[str, float]:
    """Expected and actual held-out hits in the top ``k``, their ratio, and the held-out negative
    log-likelihood per entry. log_presence [U, C], fold_in/held_out [U, C] bool."""
    log_p = candidate_log_probabilities(log_presence, fold_in)  # [U, C]
    evaluated = held_out.any(axis=1)  # [U]
    log_p, held_out = log_p[evaluated], held_out[evaluated]
    if not len(log_p):
        return {f"expected_hits@{k}": float("nan"), f"actual_hits@{k}": float("nan"),
                f"calibration@{k}": float("nan"), "held_out_nll": float("nan")}
    top = top_k(log_p, k)  # [U', k]
    n_held = held_out.sum(axis=1)  # [U']
    expected = float((n_held * np.exp(np.take_along_axis(log_p, top, axis=1)).sum(axis=1)).sum())
    actual = float(np.take_along_axis(held_out, top, axis=1).sum())
    nll = float(-log_p[held_out].mean())
    return {f"expected_hits@{k}": expected, f"actual_hits@{k}": actual,
            f"calibration@{k}": actual / expected if expected > 0 else float("nan"), "held_out_nll": nll}


def reliability(
    log_presence: np.ndarray, fold_in: np.ndarray, held_out: np.ndarray, k: int = CALIBRATION_K, bins: int = 12
) -> list[dict[str, float]]:
    """Reliability points over every user's top-``k`` candidates: per bin of predicted chance
    ``min(1, n · p)`` (log-spaced from 1e-4 to 1), its mean, the observed held-out share and the count."""
    log_p = candidate_log_probabilities(log_presence, fold_in)
    evaluated = held_out.any(axis=1)
    log_p, held_out = log_p[evaluated], held_out[evaluated]
    top = top_k(log_p, k)  # [U', k]
    chance = np.minimum(1.0, held_out.sum(axis=1, keepdims=True) * np.exp(np.take_along_axis(log_p, top, axis=1)))
    hit = np.take_along_axis(held_out, top, axis=1)  # [U', k]
    edges = np.logspace(-4, 0, bins + 1)
    which = np.clip(np.searchsorted(edges, chance.ravel(), side="right") - 1, 0, bins - 1)
    points = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            points.append({"predicted": float(chance.ravel()[inside].mean()),
                           "observed": float(hit.ravel()[inside].mean()), "count": int(inside.sum())})
    return points
