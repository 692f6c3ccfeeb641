"""Baselines scored on the same held-out users as the model (docs/design.md §7).

Ranking: popularity (training list counts) and EASE (Steck 2019), whose closed form is
``B = I - P diag(1/diag P)``, ``P = (XᵀX + λI)⁻¹`` with a zero diagonal. Ratings: each user's
fold-in mean and each show's training mean.

EASE never forms B: for a fold-in row x, ``x B = x - (x P) / diag(P)`` and the ``x`` term only
touches fold-in items, which are excluded from ranking anyway, so the score is ``-(x P)/diag P``.
With the eigendecomposition ``XᵀX = V diag(e) Vᵀ`` computed once, every λ of the tuning grid
costs one ``[U, C] @ [C, C]`` product instead of a fresh ``C³`` inverse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sprout.dataset.gram import gram_matrix
from sprout.dataset.snapshot_format import SplitArrays
from sprout.evaluation.evaluator import Evaluator, no_ranking, no_ratings, ranking_metrics, rating_metrics
from sprout.evaluation.held_out import HeldOutUsers
from sprout.evaluation.metrics import mean_defined, ndcg_at_k

EASE_LAMBDAS = (10.0, 50.0, 100.0, 200.0, 500.0, 1000.0)


# --- popularity ---------------------------------------------------------------------------


@dataclass
class PopularityEvaluator:
    """Everyone gets the shows most training users listed."""

    name: str = "popularity"

    def evaluate(self, users: HeldOutUsers) -> dict[str, float]:
        scores = np.broadcast_to(users.popularity.astype(np.float64), users.fold_in.shape)  # [U, C]
        return {**ranking_metrics(scores, users), **no_ratings()}


# --- EASE ---------------------------------------------------------------------------------


def ease_weights(x: np.ndarray, lam: float) -> np.ndarray:
    """The textbook closed form from a dense binary X [U, C]: B [C, C] with a zero diagonal (reference)."""
    gram = x.T.astype(np.float64) @ x.astype(np.float64)
    precision = np.linalg.inv(gram + lam * np.eye(gram.shape[0]))  # P [C, C]
    weights = np.eye(gram.shape[0]) - precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


@dataclass(frozen=True)
class EaseModel:
    """XᵀX = V diag(e) Vᵀ of the training split: EASE for any λ."""

    eigenvalues: np.ndarray  # [C] float32, ≥ 0 up to rounding
    eigenvectors: np.ndarray  # [C, C] float32 V
    squared_eigenvectors: np.ndarray  # [C, C] float32 V*V, for diag(P) = (V*V) @ 1/(e+λ)

    @classmethod
    def fit(cls, train: SplitArrays, corpus_size: int) -> EaseModel:
        eigenvalues, eigenvectors = np.linalg.eigh(gram_matrix(train, corpus_size))
        eigenvalues = np.maximum(eigenvalues, 0.0)  # XᵀX is PSD; clear negative rounding noise
        return cls(eigenvalues, eigenvectors, eigenvectors * eigenvectors)

    def projected(self, fold_in: np.ndarray) -> np.ndarray:
        """x V for fold-in rows x [U, C] -> [U, C]; shared by every λ."""
        return fold_in.astype(np.float32) @ self.eigenvectors

    def scores(self, projected: np.ndarray, lam: float) -> np.ndarray:
        """-(x P)/diag(P) for x V [U, C] at ridge λ -> [U, C] (equal to x B off the fold-in items)."""
        inverse = (1.0 / (self.eigenvalues + lam)).astype(np.float32)  # [C]
        x_precision = (projected * inverse[None, :]) @ self.eigenvectors.T  # [U, C] = x P
        diagonal = self.squared_eigenvectors @ inverse  # [C] = diag(P)
        return -x_precision / diagonal[None, :]


def tune_ease_lambda(
    ease: EaseModel, validation: HeldOutUsers, lambdas: tuple[float, ...] = EASE_LAMBDAS
) -> tuple[float, dict[float, float]]:
    """The λ with the best validation NDCG@100 (the smaller λ on ties), and every λ's NDCG."""
    projected = ease.projected(validation.fold_in)
    ndcgs = {}
    for lam in lambdas:
        scores = np.where(validation.fold_in, -np.inf, ease.scores(projected, lam).astype(np.float64))
        ndcgs[lam] = mean_defined(ndcg_at_k(scores, validation.held_out, 100))
    best = max(lambdas, key=lambda lam: (np.nan_to_num(ndcgs[lam], nan=-1.0), -lam))
    return best, ndcgs


@dataclass
class EaseEvaluator:
    """EASE at a chosen λ; build it with `EaseEvaluator.tuned` to pick λ on validation users."""

    ease: EaseModel
    lam: float
    validation_ndcg: dict[float, float] | None = None
    name: str = "ease"

    @classmethod
    def tuned(
        cls, train: SplitArrays, validation: HeldOutUsers, lambdas: tuple[float, ...] = EASE_LAMBDAS
    ) -> EaseEvaluator:
        ease = EaseModel.fit(train, validation.corpus_size)
        lam, ndcgs = tune_ease_lambda(ease, validation, lambdas)
        return cls(ease, lam, ndcgs)

    def evaluate(self, users: HeldOutUsers) -> dict[str, float]:
        scores = self.ease.scores(self.ease.projected(users.fold_in), self.lam)
        return {**ranking_metrics(scores, users), **no_ratings(), "ease_lambda": float(self.lam)}


# --- rating means -------------------------------------------------------------------------


def global_mean_score(train: SplitArrays) -> float:
    rated = train.scores > 0
    return float(train.scores[rated].astype(np.float64).mean()) if rated.any() else float("nan")


@dataclass
class UserMeanEvaluator:
    """Predicts each user's fold-in mean score; users who rated nothing in fold-in get the global mean."""

    global_mean: float
    name: str = "user_mean"

    def evaluate(self, users: HeldOutUsers) -> dict[str, float]:
        count = users.fold_in_score_count  # [U]
        per_user = np.where(count > 0, users.fold_in_score_sum / np.maximum(count, 1), self.global_mean)  # [U]
        return {**no_ranking(), **rating_metrics(per_user[users.rated_users], users)}


def item_mean_scores(train: SplitArrays, corpus_size: int, fallback: float) -> np.ndarray:
    """Mean training score per show; shows nobody rated get ``fallback``. [C] float64"""
    rated = train.scores > 0
    items = train.items[rated]
    total = np.bincount(items, weights=train.scores[rated].astype(np.float64), minlength=corpus_size)
    count = np.bincount(items, minlength=corpus_size)
    return np.where(count > 0, total / np.maximum(count, 1), fallback)


@dataclass
class ItemMeanEvaluator:
    """Predicts each show's mean training score."""

    item_means: np.ndarray  # [C]
    name: str = "item_mean"

    @classmethod
    def fit(cls, train: SplitArrays, corpus_size: int) -> ItemMeanEvaluator:
        return cls(item_mean_scores(train, corpus_size, global_mean_score(train)))

    def evaluate(self, users: HeldOutUsers) -> dict[str, float]:
        return {**no_ranking(), **rating_metrics(self.item_means[users.rated_items], users)}


def standard_baselines(
    train: SplitArrays, validation: HeldOutUsers, lambdas: tuple[float, ...] = EASE_LAMBDAS
) -> list[Evaluator]:
    """Popularity, EASE (λ tuned on ``validation``), user mean and item mean, fitted on ``train``."""
    return [
        PopularityEvaluator(),
        EaseEvaluator.tuned(train, validation, lambdas),
        UserMeanEvaluator(global_mean_score(train)),
        ItemMeanEvaluator.fit(train, validation.corpus_size),
    ]
