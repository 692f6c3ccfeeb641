"""Baselines on tiny hand-made splits: popularity, EASE against its textbook closed form, and
the user/item rating means."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sprout.dataset.features import normalised_values
from sprout.dataset.gram import gram_matrix, user_weights
from sprout.dataset.snapshot_format import SplitArrays
from sprout.evaluation.baselines import (
    EaseEvaluator,
    EaseModel,
    ItemMeanEvaluator,
    PopularityEvaluator,
    UserMeanEvaluator,
    ease_weights,
    global_mean_score,
    standard_baselines,
    tune_ease_lambda,
)
from sprout.evaluation.evaluator import METRIC_NAMES
from sprout.evaluation.held_out import held_out_users_from_splits
from sprout.evaluation.metrics import mean_defined, ndcg_at_k


def make_split(profiles: list[list[tuple[int, int, bool]]]) -> SplitArrays:
    """CSR split from per-user (item, raw score, held out) entries."""
    indptr = np.concatenate([[0], np.cumsum([len(p) for p in profiles])]).astype(np.int64)
    flat = [entry for profile in profiles for entry in profile]
    items = np.array([e[0] for e in flat], np.int32)
    scores = np.array([e[1] for e in flat], np.int8)
    heldout = np.array([e[2] for e in flat], bool)
    values, rated, mu, sigma = normalised_values(indptr, scores, np.zeros(len(flat), np.int8), counted=~heldout)
    return SplitArrays(tuple(f"u{i}" for i in range(len(profiles))), indptr, items, values, rated, scores, mu,
                       sigma, heldout)


def random_split(rng: np.random.Generator, n_users: int, corpus_size: int, held_out_share: float = 0.0):
    """Users who list shows of one of two taste groups (so EASE has structure to find)."""
    profiles = []
    for _ in range(n_users):
        group = rng.integers(0, 2)
        pool = np.arange(corpus_size)[np.arange(corpus_size) % 2 == group]
        items = rng.choice(pool, size=rng.integers(3, min(8, len(pool)) + 1), replace=False)
        profiles.append([(int(i), int(rng.integers(0, 11)), bool(rng.random() < held_out_share)) for i in items])
    return make_split(profiles)


TRAIN = make_split([[(0, 8, False), (1, 6, False)], [(0, 7, False), (1, 0, False)], [(0, 9, False)], [(2, 4, False)]])


def test_popularity_ranks_by_training_counts():
    split = make_split([[(0, 5, False), (3, 5, True)], [(2, 5, False), (1, 5, True)]])
    users = held_out_users_from_splits(split, TRAIN, corpus_size=4)
    metrics = PopularityEvaluator().evaluate(users)
    # user 0 (fold-in 0): 1, 2, 3 -> held-out 3 third; user 1 (fold-in 2): 0, 1, 3 -> held-out 1 second
    assert metrics["ndcg@100"] == pytest.approx((1 / np.log2(4) + 1 / np.log2(3)) / 2)
    assert math.isnan(metrics["rating_mae"])
    assert set(METRIC_NAMES) <= set(metrics)


def test_gram_matrix_counts_co_occurrences():
    gram = gram_matrix(TRAIN, 3)
    assert gram.tolist() == [[3, 2, 0], [2, 2, 0], [0, 0, 1]]


def test_user_weighting_shrinks_long_lists_and_keeps_the_number_of_entries():
    # users list 2, 2, 1, 1 shows; at power 1 a user weighs 1/n, scaled so the 6 entries stay 6:
    # raw weights 1/2, 1/2, 1, 1 over 1 + 1 + 1 + 1 = 4 weighted entries -> scale 6/4
    gram = gram_matrix(TRAIN, 3, user_weight_power=1.0)
    scale = 6 / 4
    expected = scale * np.array([[0.5 + 0.5 + 1, 0.5 + 0.5, 0], [0.5 + 0.5, 0.5 + 0.5, 0], [0, 0, 1]])
    np.testing.assert_allclose(gram, expected, rtol=1e-6)
    assert np.trace(gram) == pytest.approx(np.trace(gram_matrix(TRAIN, 3)))
    assert user_weights(np.array([4, 1]), 0.5)[1] / user_weights(np.array([4, 1]), 0.5)[0] == pytest.approx(2.0)


def test_ease_matches_the_closed_form_and_its_zero_diagonal():
    rng = np.random.default_rng(1)
    train = random_split(rng, 60, 10)
    x = np.zeros((train.n_users, 10))
    x[np.repeat(np.arange(train.n_users), np.diff(train.indptr)), train.items] = 1.0
    weights = ease_weights(x, 5.0)
    assert np.allclose(np.diag(weights), 0.0)
    # B = I - P diag(1/diag P) with P = (XᵀX + λI)^-1, written out once more by hand
    precision = np.linalg.inv(x.T @ x + 5.0 * np.eye(10))
    by_hand = -precision / np.diag(precision)
    np.fill_diagonal(by_hand, 0.0)
    np.testing.assert_allclose(weights, by_hand, atol=1e-12)

    fold_in = rng.random((4, 10)) < 0.3
    ease = EaseModel.fit(train, 10)
    fast = ease.scores(ease.projected(fold_in), 5.0)
    reference = fold_in.astype(np.float64) @ weights
    off_profile = ~fold_in  # the fast form differs only on fold-in items, which never rank
    np.testing.assert_allclose(fast[off_profile], reference[off_profile], rtol=1e-3, atol=1e-5)


def test_ease_lambda_is_chosen_on_validation_by_ndcg():
    rng = np.random.default_rng(2)
    corpus_size = 12
    train = random_split(rng, 80, corpus_size)
    validation = held_out_users_from_splits(random_split(rng, 30, corpus_size, 0.4), train, corpus_size, "validation")
    lambdas = (0.1, 10.0, 1000.0)
    ease = EaseModel.fit(train, corpus_size)
    best, ndcgs = tune_ease_lambda(ease, validation, lambdas)

    x = np.zeros((train.n_users, corpus_size))
    x[np.repeat(np.arange(train.n_users), np.diff(train.indptr)), train.items] = 1.0
    for lam in lambdas:
        scores = np.where(validation.fold_in, -np.inf, validation.fold_in.astype(np.float64) @ ease_weights(x, lam))
        assert ndcgs[lam] == pytest.approx(mean_defined(ndcg_at_k(scores, validation.held_out, 100)), abs=1e-6)
    assert ndcgs[best] == max(ndcgs.values())

    evaluator = EaseEvaluator.tuned(train, validation, lambdas)
    assert evaluator.lam == best
    metrics = evaluator.evaluate(validation)
    assert metrics["ndcg@100"] == pytest.approx(ndcgs[best], abs=1e-6)
    assert metrics["ease_lambda"] == best and math.isnan(metrics["rating_rmse"])
    # taste groups are learnable: EASE beats popularity
    assert metrics["ndcg@100"] > PopularityEvaluator().evaluate(validation)["ndcg@100"]


def test_user_and_item_means_by_hand():
    split = make_split([
        [(0, 8, False), (1, 6, False), (2, 9, True)],  # fold-in mean 7 -> predicts 7 for item 2
        [(1, 0, False), (0, 4, True)],  # no fold-in score -> global training mean
    ])
    users = held_out_users_from_splits(split, TRAIN, corpus_size=4)
    global_mean = global_mean_score(TRAIN)
    assert global_mean == pytest.approx((8 + 6 + 7 + 9 + 4) / 5)

    user_mean = UserMeanEvaluator(global_mean).evaluate(users)
    errors = np.array([7 - 9, global_mean - 4])
    assert user_mean["rating_mae"] == pytest.approx(np.abs(errors).mean())
    assert user_mean["rating_rmse"] == pytest.approx(np.sqrt((errors**2).mean()))
    assert math.isnan(user_mean["ndcg@100"])

    item_mean = ItemMeanEvaluator.fit(TRAIN, 4)
    # item 0: (8 + 7 + 9) / 3 = 8; item 2: 4; item 3 nobody rated: global mean
    assert item_mean.item_means.tolist() == pytest.approx([8.0, 6.0, 4.0, global_mean])
    metrics = item_mean.evaluate(users)
    assert metrics["rating_mae"] == pytest.approx((abs(4 - 9) + abs(8 - 4)) / 2)


def test_standard_baselines_share_metric_names():
    rng = np.random.default_rng(3)
    train = random_split(rng, 40, 8)
    validation = held_out_users_from_splits(random_split(rng, 10, 8, 0.4), train, 8, "validation")
    for evaluator in standard_baselines(train, validation, (1.0, 10.0)):
        assert set(METRIC_NAMES) <= set(evaluator.evaluate(validation)), evaluator.name
