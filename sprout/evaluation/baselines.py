"""Baselines scored on the same held-out users as the model (docs/design.md §7).

Ranking: popularity (training list counts) and EASE (Steck 2019), whose closed form is
``B = I - P diag(1/diag P)``, ``P = (XᵀX + λI)⁻¹`` with a zero diagonal. Ratings: each user's
fold-in mean, each show's training mean, user + item biases and item-kNN with baselines
(`sprout.model.rating_neighbours`), the last two with the user's bias from their fold-in ratings.

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
from sprout.evaluation.model_scores import held_out_rating_components
from sprout.model.rating_neighbours import DEFAULT_K, Biases, Neighbours, fit_biases, fit_neighbours, user_biases
from sprout.model.rating_path import NEIGHBOURS_ALONE, SCORE_RANGE, RatingPath

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

    @classmethod
    def tuned_then_fitted(
        cls, train: SplitArrays, validation: HeldOutUsers, fit_on: SplitArrays,
        lambdas: tuple[float, ...] = EASE_LAMBDAS,
    ) -> EaseEvaluator:
        """λ tuned with ``train`` on ``validation``, then EASE fitted on ``fit_on`` at that λ."""
        tuned = cls.tuned(train, validation, lambdas)
        if fit_on is train:
            return tuned
        return cls(EaseModel.fit(fit_on, validation.corpus_size), tuned.lam, tuned.validation_ndcg)

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

    def rating_predictions(self, users: HeldOutUsers) -> np.ndarray:
        count = users.fold_in_score_count  # [U]
        per_user = np.where(count > 0, users.fold_in_score_sum / np.maximum(count, 1), self.global_mean)  # [U]
        return per_user[users.rated_users]  # [m]

    def evaluate(self, users: HeldOutUsers) -> dict[str, float]:
        return {**no_ranking(), **rating_metrics(self.rating_predictions(users), users)}


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

    def rating_predictions(self, users: HeldOutUsers) -> np.ndarray:
        return self.item_means[users.rated_items]  # [m]

    def evaluate(self, users: HeldOutUsers) -> dict[str, float]:
        return {**no_ranking(), **rating_metrics(self.rating_predictions(users), users)}


def fold_in_scores(split: SplitArrays) -> np.ndarray:
    """The split's raw scores with held-out entries blanked (0 = unrated): what a model may see. [n]"""
    return np.where(split.heldout, 0, split.scores).astype(split.scores.dtype)


def bias_predictions(biases: Biases, users: HeldOutUsers) -> tuple[np.ndarray, np.ndarray]:
    """(each user's fold-in b_u [U], the unclamped μ + b_u + b_i of each held-out rated entry [m])."""
    split = users.split
    user_bias = user_biases(biases, split.indptr, split.items, fold_in_scores(split))  # [U]
    baseline = biases.global_mean + user_bias[users.rated_users] + biases.item_bias[users.rated_items]  # [m]
    return user_bias, baseline


@dataclass
class BiasEvaluator:
    """μ + b_u + b_i: the show's training bias plus how the user rates relative to it (their fold-in)."""

    biases: Biases
    name: str = "bias"

    @classmethod
    def fit(cls, train: SplitArrays, corpus_size: int) -> BiasEvaluator:
        return cls(fit_biases(train.indptr, train.items, train.scores, corpus_size))

    def rating_predictions(self, users: HeldOutUsers) -> np.ndarray:
        _, baseline = bias_predictions(self.biases, users)
        return np.clip(baseline, *SCORE_RANGE)  # [m]

    def evaluate(self, users: HeldOutUsers) -> dict[str, float]:
        return {**no_ranking(), **rating_metrics(self.rating_predictions(users), users)}


@dataclass
class ItemKnnEvaluator:
    """Item-kNN with baselines: the bias prediction plus the similarity-weighted residuals of the
    user's fold-in ratings on the k shows most like the target."""

    biases: Biases
    neighbours: Neighbours
    k: int = DEFAULT_K
    name: str = "item_knn"

    @classmethod
    def fit(cls, train: SplitArrays, corpus_size: int, k: int = DEFAULT_K) -> ItemKnnEvaluator:
        biases = fit_biases(train.indptr, train.items, train.scores, corpus_size)
        return cls(biases, fit_neighbours(train.indptr, train.items, train.scores, biases, corpus_size), k)

    def rating_predictions(self, users: HeldOutUsers) -> np.ndarray:
        path = RatingPath(self.biases, self.neighbours, self.k, NEIGHBOURS_ALONE)  # the model's rating path
        baseline, correction = held_out_rating_components(path, users)  # [m] each
        return np.clip(baseline + correction, *SCORE_RANGE)

    def evaluate(self, users: HeldOutUsers) -> dict[str, float]:
        return {**no_ranking(), **rating_metrics(self.rating_predictions(users), users)}


def standard_baselines(
    train: SplitArrays, validation: HeldOutUsers, lambdas: tuple[float, ...] = EASE_LAMBDAS,
    fit_on: SplitArrays | None = None,
) -> list[Evaluator]:
    """Popularity, EASE (λ tuned on ``validation``), user mean, item mean, biases and item-kNN.

    Choices are made with ``train`` and ``validation``; every baseline is then fitted on
    ``fit_on`` (default ``train``) — the users the model being compared was finally fitted on,
    so that both learn from the same users."""
    fit_on = train if fit_on is None else fit_on
    return [
        PopularityEvaluator(),
        EaseEvaluator.tuned_then_fitted(train, validation, fit_on, lambdas),
        UserMeanEvaluator(global_mean_score(fit_on)),
        ItemMeanEvaluator.fit(fit_on, validation.corpus_size),
        BiasEvaluator.fit(fit_on, validation.corpus_size),
        ItemKnnEvaluator.fit(fit_on, validation.corpus_size),
    ]
