"""The served rating: the deep rating head blended with a user + item bias baseline and an
item-neighbourhood correction, all fitted outside gradient descent; pure numpy.

For a user with rated shows R (raw scores 1..10) and a target show t:

    b_ut = μ + b_u + b_t                          bias baseline (b_u from the user's own ratings)
    d_ut = Σ_{j ∈ N_k(t) ∩ R} s_tj e_uj / Σ s_tj   neighbourhood correction (e = r − b), 0 without neighbours
    h_ut = the deep rating head's prediction on the 1..10 scale
    r̂_ut = clamp(b_ut + β0 + β1·d_ut + β2·(h_ut − b_ut), 1, 10)

(β0, β1, β2) are fitted on validation users for the least absolute error, so the blend is
item-kNN with baselines at (0, 1, 0) and no worse than it on those users. The arrays live in
the model (`Fitted` variables, saved with the weights); `RatingPath.of` reads them back.

"Will the user like it" is the probability that their score reaches their own mean,
``q = sigmoid(a·(r̂ − mu) + c)``, with (a, c) fitted on validation users' held-out ratings by
logistic regression; the ranking score weighs it (`sprout.model.ranking_score`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sprout.model.rating_neighbours import Biases, Neighbours, neighbour_residual, user_biases

SCORE_RANGE = (1.0, 10.0)
DEFAULT_LIKE_CURVE = (1.0, 0.0)  # slope per rating point, offset: models without a fitted curve
NEIGHBOURS_ALONE = np.array([0.0, 1.0, 0.0])  # the blend (β0, β1, β2) that is item-kNN with baselines


@dataclass(frozen=True)
class RatingPath:
    biases: Biases
    neighbours: Neighbours
    k: int
    blend: np.ndarray  # [3] β0, β1, β2

    @classmethod
    def of(cls, model) -> RatingPath | None:
        """The rating path a model carries (None for a model with the deep rating head alone)."""
        if not model.config.rating_neighbours:
            return None
        biases = Biases(
            global_mean=float(np.asarray(model.rating_global_mean[...])),
            item_bias=np.asarray(model.rating_item_bias[...], np.float64),
            user_reg=float(np.asarray(model.rating_user_reg[...])),
        )
        neighbours = Neighbours(
            ids=np.asarray(model.neighbour_ids[...], np.int32),
            similarities=np.asarray(model.neighbour_similarities[...], np.float32),
        )
        return cls(biases, neighbours, model.config.rating_k, np.asarray(model.rating_blend[...], np.float64))

    def user_bias(self, items: np.ndarray, scores: np.ndarray) -> float:
        """b_u from one user's rated shows items/scores [n] (0 = unrated, ignored)."""
        return float(user_biases(self.biases, np.array([0, len(items)]), items, scores)[0])

    def components(self, items: np.ndarray, scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bias baseline b [T], neighbourhood correction d [T]) of ``targets`` for one user's
        profile items/scores [n]."""
        rated = scores > 0
        user_bias = self.user_bias(items, scores)
        baseline = self.biases.global_mean + user_bias + self.biases.item_bias  # [C]
        residual = scores[rated].astype(np.float64) - baseline[items[rated]]  # [m]
        correction = neighbour_residual(self.neighbours, self.k, items[rated], residual, targets)  # [T]
        return baseline[targets], correction

    def predict(self, items: np.ndarray, scores: np.ndarray, targets: np.ndarray, deep: np.ndarray) -> np.ndarray:
        """Blended scores 1..10 of ``targets`` [T], given the deep head's scores ``deep`` [T]."""
        baseline, correction = self.components(items, scores, targets)
        return blend_ratings(self.blend, baseline, correction, deep)

    def predict_held_out(self, items: np.ndarray, scores: np.ndarray, entries: np.ndarray, deep: np.ndarray) -> np.ndarray:
        """Each profile entry in ``entries`` [R] (positions into items/scores) predicted with itself
        held out, given the deep head's held-out scores ``deep`` [R]. -> [R]"""
        keep = np.ones(len(items), bool)
        predicted = np.empty(len(entries), np.float64)
        for row, entry in enumerate(entries):
            keep[entry] = False
            baseline, correction = self.components(items[keep], scores[keep], items[entry : entry + 1])
            predicted[row] = blend_ratings(self.blend, baseline, correction, deep[row : row + 1])[0]
            keep[entry] = True
        return predicted


def like_curve_of(model) -> tuple[float, float]:
    """(slope, offset) of a model's P(like) curve (`log_like`); the default for a model without one."""
    if model.config.rating_neighbours:
        slope, offset = np.asarray(model.like_curve[...], np.float64)
        return float(slope), float(offset)
    return DEFAULT_LIKE_CURVE


def blend_ratings(blend: np.ndarray, baseline: np.ndarray, correction: np.ndarray, deep: np.ndarray) -> np.ndarray:
    """r̂ = clamp(b + β0 + β1·d + β2·(h − b), 1, 10); every argument [..., T] alike."""
    return np.clip(baseline + blend[0] + blend[1] * correction + blend[2] * (deep - baseline), *SCORE_RANGE)


def fit_blend(
    actual: np.ndarray, baseline: np.ndarray, correction: np.ndarray, deep: np.ndarray, steps: int = 50
) -> np.ndarray:
    """(β0, β1, β2) of r − b on (1, d, h − b) with the least absolute error over held-out rated
    entries [m] (iteratively reweighted least squares; MAE is what ratings are judged by, and
    least squares measured a worse MAE than the neighbourhood alone). -> [3]"""
    design = np.stack([np.ones_like(baseline), correction, deep - baseline], axis=1)  # [m, 3]
    target = actual - baseline
    weights = np.ones_like(target)
    blend = np.array([0.0, 1.0, 0.0])
    for _ in range(steps):
        weighted = design * weights[:, None]
        blend = np.linalg.solve(design.T @ weighted + 1e-6 * np.eye(3), weighted.T @ target)
        weights = 1.0 / np.maximum(np.abs(target - design @ blend), 1e-3)  # |e| weights: least absolute error
    return blend


def log_like(predicted: np.ndarray, mu, curve) -> np.ndarray:
    """log q, q = sigmoid(a·(r̂ − mu) + c): the chance the user rates the show at least their mean.
    predicted [..., T] on 1..10, mu broadcastable to it, curve (a, c)."""
    logit = curve[0] * (np.asarray(predicted, np.float64) - mu) + curve[1]
    return -np.logaddexp(0.0, -logit)


def fit_like_curve(predicted: np.ndarray, mu: np.ndarray, actual: np.ndarray, steps: int = 50) -> tuple[float, float]:
    """Logistic regression of [actual ≥ mu] on (r̂ − mu): the (a, c) of `log_like`. All [m]."""
    x = np.asarray(predicted, np.float64) - mu
    y = (np.asarray(actual, np.float64) >= mu).astype(np.float64)
    if len(y) == 0 or y.min() == y.max():
        return DEFAULT_LIKE_CURVE
    design = np.stack([x, np.ones_like(x)], axis=1)  # [m, 2]
    theta = np.zeros(2)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (y - p)
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta += step
        if np.abs(step).max() < 1e-8:
            break
    return float(theta[0]), float(theta[1])
