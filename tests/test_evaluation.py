"""Evaluation metrics and model scoring, checked by hand on tiny held-out users."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from flax import nnx

from sprout.dataset.features import denormalise, normalised_values
from sprout.dataset.snapshot_format import SplitArrays
from sprout.evaluation.evaluator import METRIC_NAMES, exclude_fold_in, ranking_metrics, rating_metrics
from sprout.evaluation.held_out import held_out_users_from_splits
from sprout.evaluation.metrics import (
    coverage_at_k,
    graded_ndcg_at_k,
    mean_popularity_at_k,
    ndcg_at_k,
    rating_errors,
    recall_at_k,
)
from sprout.evaluation.model_scores import ModelEvaluator, model_scores
from sprout.model.ranking_score import log_ranking_score
from sprout.model.autoencoder import Autoencoder
from sprout.model.config import ModelConfig


def make_split(profiles: list[list[tuple[int, int, bool]]]) -> SplitArrays:
    """CSR split from per-user (item, raw score, held out) entries; mu/sigma over fold-in scores."""
    lengths = [len(p) for p in profiles]
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = [entry for profile in profiles for entry in profile]
    items = np.array([e[0] for e in flat], np.int32)
    scores = np.array([e[1] for e in flat], np.int8)
    heldout = np.array([e[2] for e in flat], bool)
    status = np.zeros(len(flat), np.int8)  # watching: unrated entries get the user's mean
    values, rated, mu, sigma = normalised_values(indptr, scores, status, counted=~heldout)
    return SplitArrays(
        usernames=tuple(f"u{i}" for i in range(len(profiles))), indptr=indptr, items=items, values=values,
        rated=rated, scores=scores, mu=mu, sigma=sigma, heldout=heldout,
    )


# Training split: item 0 listed by 3 users, item 1 by 2, item 2 by 1 (4 training users).
TRAIN = make_split([[(0, 8, False), (1, 6, False)], [(0, 7, False), (1, 0, False)], [(0, 9, False)], [(2, 4, False)]])


def test_recall_with_fewer_held_out_than_k_and_empty_users_skipped():
    scores = np.arange(30, 0, -1, dtype=np.float64)[None].repeat(3, axis=0)  # item 0 best
    relevant = np.zeros((3, 30), bool)
    relevant[0, [1, 25]] = True  # 2 held out, K = 20: one hit of min(20, 2)
    relevant[1, [0, 3]] = True  # both in the top 20
    # user 2 holds nothing out: NaN, left out of the mean
    recall = recall_at_k(scores, relevant, 20)
    assert recall[:2].tolist() == [0.5, 1.0] and math.isnan(recall[2])
    assert np.nanmean(recall) == 0.75


def test_ties_rank_the_lower_index_first():
    scores = np.array([[1.0, 1.0, 1.0, 0.0]])
    relevant = np.array([[False, False, True, True]])
    # top-2 of three tied items = {0, 1}: no hit
    assert recall_at_k(scores, relevant, 2)[0] == 0.0
    # top-3 = {0, 1, 2}: item 2 at rank 3
    assert ndcg_at_k(scores, relevant, 3)[0] == pytest.approx((1 / np.log2(4)) / (1 + 1 / np.log2(3)))


def test_coverage_and_mean_popularity_by_hand():
    scores = np.array([[3.0, 2.0, 1.0, 0.0], [0.0, 3.0, 2.0, 1.0], [9.0, 9.0, 9.0, 9.0]])
    users = np.array([True, True, False])  # third user skipped
    # top-2: {0, 1} and {1, 2} -> 3 of 4 items
    assert coverage_at_k(scores, 2, users) == 0.75
    popularity = np.array([0.5, 0.25, 0.0, 1.0])
    # (0.5 + 0.25) / 2 and (0.25 + 0) / 2 -> mean 0.25
    assert mean_popularity_at_k(scores, popularity, 2, users) == pytest.approx(0.25)
    # excluded (-inf) slots count neither for coverage nor popularity
    excluded = np.array([[3.0, -np.inf, -np.inf, -np.inf]])
    assert coverage_at_k(excluded, 2) == 0.25
    assert mean_popularity_at_k(excluded, popularity, 2) == 0.5


def test_rating_errors_by_hand_and_nan_for_broken_predictions():
    mae, rmse = rating_errors(np.array([7.0, 5.0]), np.array([8.0, 8.0]))
    assert mae == 2.0 and rmse == pytest.approx(math.sqrt(5.0))
    assert all(math.isnan(v) for v in rating_errors(np.array([np.nan, 5.0]), np.array([8.0, 8.0])))
    assert all(math.isnan(v) for v in rating_errors(np.array([]), np.array([])))


def test_held_out_users_and_metric_dict():
    split = make_split([
        [(0, 8, False), (1, 6, False), (2, 9, True), (3, 0, True)],
        [(1, 5, False), (3, 7, True)],
        [(2, 4, False)],  # nothing held out: skipped
    ])
    users = held_out_users_from_splits(split, TRAIN, corpus_size=5)
    assert users.fold_in[0].tolist() == [True, True, False, False, False]
    assert users.held_out[0].tolist() == [False, False, True, True, False]
    assert users.evaluated.tolist() == [True, True, False]
    assert users.rated_users.tolist() == [0, 1] and users.rated_items.tolist() == [2, 3]
    assert users.rated_scores.tolist() == [9.0, 7.0]
    assert users.fold_in_score_count.tolist() == [2, 1, 1]
    assert users.popularity.tolist() == [3, 2, 1, 0, 0] and users.n_train_users == 4

    # a score that prefers fold-in item 0 must not count it: fold-in is excluded
    scores = np.array([[9.0, 8.0, 7.0, 1.0, 0.0]] * 3)
    assert exclude_fold_in(scores, users)[0, :2].tolist() == [-np.inf, -np.inf]
    metrics = ranking_metrics(scores, users)
    # user 0: ranking 2, 3, 4 -> both held out found; user 1: ranking 0, 2, 3, 4 -> item 3 third
    assert metrics["recall@20"] == 1.0
    assert metrics["ndcg@100"] == pytest.approx((1.0 + 1 / np.log2(4)) / 2)
    # top-20 lists of users 0 and 1 cover items {0, 2, 3, 4}: 4 of 5
    assert metrics["coverage@20"] == 0.8
    # popularity shares: user 0 mean(1/4, 0, 0) ; user 1 mean(3/4, 1/4, 0, 0)
    assert metrics["mean_popularity@20"] == pytest.approx((1 / 12 + 1 / 4) / 2)
    expected = {"rating_mae": 0.5, "rating_rmse": pytest.approx(math.sqrt(0.5))}
    assert rating_metrics(np.array([8.0, 7.0]), users) == expected


def test_ranking_score_formula_by_hand():
    # p · q^(1 - w): the chance of watching, times the chance of liking raised to 1 - w
    expected = 0.2 * 0.5**0.7
    assert math.exp(log_ranking_score(math.log(0.2), math.log(0.5), 0.3)) == pytest.approx(expected)
    assert math.exp(log_ranking_score(math.log(0.2), math.log(0.5), 1.0)) == pytest.approx(0.2)  # presence alone
    assert math.exp(log_ranking_score(math.log(0.2), math.log(0.5), 0.0)) == pytest.approx(0.1)  # watch and like
    traced = jax.jit(lambda lp, lq: log_ranking_score(lp, lq, 0.3))(np.log(np.float32(0.2)), np.log(np.float32(0.5)))
    assert math.exp(float(traced)) == pytest.approx(expected, rel=1e-5)


def test_graded_ndcg_rewards_ranking_the_liked_held_out_shows_first():
    gains = np.array([[0.0, 0.9, 0.3, 0.0]])  # held out: show 1 rated 9, show 2 rated 3
    best = graded_ndcg_at_k(np.array([[0.0, 4.0, 3.0, 1.0]]), gains, 100)
    swapped = graded_ndcg_at_k(np.array([[0.0, 3.0, 4.0, 1.0]]), gains, 100)
    assert best[0] == pytest.approx(1.0)
    assert swapped[0] == pytest.approx((0.3 + 0.9 / np.log2(3)) / (0.9 + 0.3 / np.log2(3)))
    assert np.isnan(graded_ndcg_at_k(np.zeros((1, 4)), np.zeros((1, 4)), 100)[0])


def _tiny_model(corpus_size: int, seed: int = 0) -> Autoencoder:
    config = ModelConfig.tiny(corpus_size=corpus_size, encoder_hidden=16, bottleneck=8, decoder_hidden=(8,))
    return Autoencoder(config, nnx.Rngs(seed))


def _users(corpus_size: int = 12):
    rng = np.random.default_rng(0)
    profiles = []
    for _ in range(7):
        items = rng.choice(corpus_size, size=6, replace=False)
        profiles.append([(int(i), int(rng.integers(0, 11)), bool(j >= 4)) for j, i in enumerate(items)])
    return held_out_users_from_splits(make_split(profiles), TRAIN, corpus_size)


def test_model_scores_match_a_direct_forward_pass():
    users = _users()
    model = _tiny_model(users.corpus_size)
    result = model_scores(model, users, rating_weight=0.3, batch_size=4)  # two batches, the last padded
    assert result.finite and result.scores.shape == (7, 12)
    split = users.split
    for user in range(users.n_users):
        lo, hi = split.indptr[user], split.indptr[user + 1]
        keep = ~split.heldout[lo:hi]
        items = split.items[lo:hi][keep][None]
        values = split.values[lo:hi][keep][None]
        logits, ratings = model(items, values, np.ones_like(items, bool))
        p = np.asarray(jax.nn.softmax(logits[0]), np.float64)
        r = np.asarray(ratings[0], np.float64)
        expected_ratings = denormalise(r, users.mu[user], users.sigma[user])
        liked = 1 / (1 + np.exp(-(expected_ratings - users.mu[user])))  # the default like curve (1, 0)
        expected = p * liked**0.7
        np.testing.assert_allclose(np.exp(result.scores[user]), expected, rtol=1e-4)
        np.testing.assert_allclose(np.exp(result.log_presence[user]), p, rtol=1e-4)
        np.testing.assert_allclose(result.ratings[user], expected_ratings, rtol=1e-4)
        assert ((result.ratings[user] >= 1) & (result.ratings[user] <= 10)).all()


def test_model_evaluator_reports_every_metric_and_flags_nan_weights():
    users = _users()
    model = _tiny_model(users.corpus_size)
    metrics = ModelEvaluator(model, latency_runs=2).evaluate(users)
    assert set(METRIC_NAMES) | {"finite", "forward_latency_ms"} <= set(metrics)
    assert metrics["finite"] == 1.0 and metrics["forward_latency_ms"] > 0
    assert all(math.isfinite(metrics[name]) for name in METRIC_NAMES)

    broken = _tiny_model(users.corpus_size)
    broken.rating_head.output.bias[...] = broken.rating_head.output.bias[...] * np.nan
    metrics = ModelEvaluator(broken, latency_runs=2).evaluate(users)
    assert metrics["finite"] == 0.0
    assert math.isnan(metrics["rating_mae"]) and math.isnan(metrics["rating_rmse"])


def test_model_with_another_corpus_is_refused():
    users = _users()
    with pytest.raises(ValueError, match="corpus size"):
        model_scores(_tiny_model(users.corpus_size + 1), users)
