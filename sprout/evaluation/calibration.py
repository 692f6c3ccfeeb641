"""Do the presence probabilities mean what they say? Calibration on held-out users; pure numpy.

A served probability is the chance that the user's next show is this one, over the shows not
already in their profile (it sums to 1 over them). A held-out user's next show is one of their
held-out entries, each as likely as the others (the split does not record which came first), so
show ``j`` is it with chance ``hit_j / n`` (``n`` held-out entries, ``hit_j`` 1 when ``j`` is one
of them). Calibrated probabilities predict exactly that, on average, wherever one looks:

- over each user's top ``k`` candidates, the expected number of next shows found there,
  ``Σ_u Σ_{top k} p``, against the number found, ``Σ_u |held-out ∩ top k| / n``; their ratio
  (``calibration@k``) is 1 when calibrated, below 1 when overconfident, above when too timid;
- per bin of predicted probability, the mean ``p`` against the mean ``hit / n`` (`reliability`);
- the next show's negative log-likelihood, ``mean_u −Σ_{j held out} log p_j / n`` (lower is better).

Counting each held-out entry as a next show of its own (``n · p`` of them expected) would ask a
show with ``p = 0.2`` and ``n = 20`` to be held out four times over.
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


def _evaluated(log_presence: np.ndarray, fold_in: np.ndarray, held_out: np.ndarray):
    """Candidate log probabilities, held-out masks and next-show chances [U', C] of users with held-out entries."""
    log_p = candidate_log_probabilities(log_presence, fold_in)  # [U, C]
    evaluated = held_out.any(axis=1)  # [U]
    log_p, held_out = log_p[evaluated], held_out[evaluated]
    next_show = held_out / np.maximum(held_out.sum(axis=1, keepdims=True), 1)  # [U', C] hit / n
    return log_p, held_out, next_show


def presence_calibration(
    log_presence: np.ndarray, fold_in: np.ndarray, held_out: np.ndarray, k: int = CALIBRATION_K
) -> dict[str, float]:
    """Expected and actual next shows in the top ``k``, their ratio, and the next show's negative
    log-likelihood (see the module docstring). log_presence [U, C], fold_in/held_out [U, C] bool."""
    log_p, held_out, next_show = _evaluated(log_presence, fold_in, held_out)
    if not len(log_p):
        return {f"expected_next@{k}": float("nan"), f"actual_next@{k}": float("nan"),
                f"calibration@{k}": float("nan"), "next_show_nll": float("nan")}
    top = top_k(log_p, k)  # [U', k]
    expected = float(np.exp(np.take_along_axis(log_p, top, axis=1)).sum())
    actual = float(np.take_along_axis(next_show, top, axis=1).sum())
    nll = float(-(next_show * np.where(held_out, log_p, 0.0)).sum(axis=1).mean())
    return {f"expected_next@{k}": expected, f"actual_next@{k}": actual,
            f"calibration@{k}": actual / expected if expected > 0 else float("nan"), "next_show_nll": nll}


def reliability(
    log_presence: np.ndarray, fold_in: np.ndarray, held_out: np.ndarray, k: int = CALIBRATION_K, bins: int = 10
) -> list[dict[str, float]]:
    """Reliability points over every user's top-``k`` candidates: per bin of probability
    (log-spaced from 1e-5 to 1), the mean probability, the mean chance it was the next show
    (``hit / n``) and the number of candidates."""
    log_p, _, next_show = _evaluated(log_presence, fold_in, held_out)
    top = top_k(log_p, k)  # [U', k]
    predicted = np.exp(np.take_along_axis(log_p, top, axis=1)).ravel()
    observed = np.take_along_axis(next_show, top, axis=1).ravel()
    edges = np.logspace(-5, 0, bins + 1)
    which = np.clip(np.searchsorted(edges, predicted, side="right") - 1, 0, bins - 1)
    points = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            points.append({"predicted": float(predicted[inside].mean()), "observed": float(observed[inside].mean()),
                           "count": int(inside.sum())})
    return points
