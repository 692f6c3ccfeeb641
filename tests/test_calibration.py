"""Calibrated presence probabilities: the calibration figures, the presence map and its fit, the
like curve."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from sprout.evaluation.calibration import candidate_log_probabilities, presence_calibration, reliability
from sprout.model.presence_map import log_softplus, mapped_logits, mapped_slope
from sprout.model.rating_path import fit_like_curve, log_like
from sprout.training.presence_map_fit import fit_map_parameters


def four_users():
    """Four users with the same logits over shows (a, b, c) = (5, 0, 1); a is in every profile.
    Two hold out c, one holds out b and one holds out both: of the four next shows, c is 2 + 1/2."""
    logits = np.tile([5.0, 0.0, 1.0], (4, 1))
    fold_in = np.zeros((4, 3), bool)
    fold_in[:, 0] = True
    held_out = np.zeros((4, 3), bool)
    held_out[:2, 2] = True
    held_out[2, 1] = True
    held_out[3, 1:] = True
    return logits, fold_in, held_out


def test_probabilities_sum_to_one_over_the_shows_not_in_the_profile():
    logits, fold_in, _ = four_users()
    log_p = candidate_log_probabilities(logits, fold_in)
    assert np.all(np.isneginf(log_p[:, 0]))
    assert np.exp(log_p).sum(axis=1) == pytest.approx(np.ones(4))
    assert np.exp(log_p[0, 2]) == pytest.approx(math.e / (1 + math.e))


def test_calibration_counts_next_shows_not_held_out_entries():
    """p(c) = 0.625 everywhere; c is the next show of users 0 and 1, half of user 3's and none of
    user 2's: 2.5 of 4 found in the top 1, 4 × 0.625 = 2.5 expected."""
    logits, fold_in, held_out = four_users()
    calibrated = logits * math.log(0.625 / 0.375)  # p(b) = 0.375, p(c) = 0.625
    top_one = presence_calibration(calibrated, fold_in, held_out, k=1)
    assert top_one["expected_next@1"] == pytest.approx(4 * 0.625)
    assert top_one["actual_next@1"] == pytest.approx(2.5)
    assert top_one["calibration@1"] == pytest.approx(1.0)
    nll = -(2 * math.log(0.625) + math.log(0.375) + 0.5 * (math.log(0.625) + math.log(0.375))) / 4
    assert top_one["next_show_nll"] == pytest.approx(nll)
    timid = presence_calibration(calibrated / 10, fold_in, held_out, k=1)  # p(c) ≈ 0.51: too timid
    assert timid["calibration@1"] > 1.2
    sharp = presence_calibration(calibrated * 10, fold_in, held_out, k=1)  # p(c) ≈ 1: overconfident
    assert sharp["calibration@1"] == pytest.approx(0.625, abs=1e-2)
    points = reliability(calibrated, fold_in, held_out, k=2)
    assert sum(p["count"] for p in points) == 8
    assert sum(p["observed"] * p["count"] for p in points) == pytest.approx(4.0)  # one next show per user


def test_the_fitted_map_gives_the_hand_computed_probability():
    """With two candidates the likelihood is best where p(c) is c's share of the next shows,
    2.5 / 4: any map with F(1) − F(0) = ln(0.625 / 0.375) is optimal, and the fit finds one."""
    logits, fold_in, held_out = four_users()
    fit = fit_map_parameters(logits, fold_in, held_out)
    mapped = np.asarray(mapped_logits(jnp.asarray(logits), fit.scale, fit.power, fit.offset))
    p = np.exp(candidate_log_probabilities(mapped, fold_in))
    assert p[:, 2] == pytest.approx(np.full(4, 0.625), abs=1e-3)
    assert fit.next_show_nll == pytest.approx(-(2.5 * math.log(0.625) + 1.5 * math.log(0.375)) / 4, abs=1e-4)


def test_the_map_keeps_every_ranking_and_its_slope_is_its_derivative():
    logits = jnp.asarray(np.random.default_rng(3).normal(scale=10.0, size=(5, 300)))
    for scale, power, offset in ((0.2, 1.7, 1.5), (3.0, 0.5, -4.0), (1.0, 1.0, 1000.0)):
        mapped = np.asarray(mapped_logits(logits, scale, power, offset))
        assert np.isfinite(mapped).all()
        np.testing.assert_array_equal(np.argsort(mapped, axis=1, kind="stable"), np.argsort(np.asarray(logits), axis=1, kind="stable"))
        step = 1e-2
        numeric = (mapped_logits(logits + step, scale, power, offset) - mapped_logits(logits - step, scale, power, offset)) / (2 * step)
        np.testing.assert_allclose(np.asarray(mapped_slope(logits, scale, power, offset)), np.asarray(numeric), rtol=2e-2, atol=1e-4)
    assert float(log_softplus(jnp.asarray(-500.0))) == pytest.approx(-500.0)  # no log(0) far below


def synthetic_users(rng, score_power: float, n_users: int = 600, n_shows: int = 80):
    """Users whose next shows are drawn from p ∝ softplus(score)^score_power over their
    non-profile shows: a probability that is a power of a linear score, as B's scores are."""
    scores = rng.normal(size=(n_users, n_shows)) * 3.0
    fold_in = rng.random((n_users, n_shows)) < 0.2
    held_out = np.zeros_like(fold_in)
    for user in range(n_users):
        weights = np.where(fold_in[user], 0.0, np.log1p(np.exp(scores[user])) ** score_power)
        drawn = rng.choice(n_shows, size=int(rng.integers(1, 6)), replace=False, p=weights / weights.sum())
        held_out[user, drawn] = True
    return scores, fold_in, held_out


def test_the_map_fits_probabilities_a_temperature_cannot():
    """On users whose next-show chance is a power of a linear score the fitted map is calibrated
    on new users, top to bottom, and its likelihood beats the best single temperature's."""
    rng = np.random.default_rng(0)
    train, test = synthetic_users(rng, 0.5), synthetic_users(rng, 0.5)
    fit = fit_map_parameters(*train)
    mapped = np.asarray(mapped_logits(jnp.asarray(test[0]), fit.scale, fit.power, fit.offset))
    calibrated = presence_calibration(mapped, test[1], test[2], k=10)
    assert calibrated["calibration@10"] == pytest.approx(1.0, abs=0.1)
    temperatures = [presence_calibration(beta * test[0], test[1], test[2], k=10)["next_show_nll"]
                    for beta in np.geomspace(0.01, 10, 61)]
    assert calibrated["next_show_nll"] < min(temperatures) - 0.02
    for point in reliability(mapped, test[1], test[2], k=10):
        if point["count"] >= 200:
            assert point["observed"] == pytest.approx(point["predicted"], rel=0.35)


def test_the_like_curve_is_a_calibrated_probability_of_reaching_the_users_mean():
    rng = np.random.default_rng(1)
    mu = rng.uniform(5, 9, size=4000)
    predicted = mu + rng.normal(scale=1.5, size=4000)
    true_curve = (1.3, -0.4)
    chance = 1 / (1 + np.exp(-(true_curve[0] * (predicted - mu) + true_curve[1])))
    actual = np.where(rng.random(4000) < chance, mu + 1, mu - 1)  # reached the mean or not
    slope, offset = fit_like_curve(predicted, mu, actual)
    assert slope == pytest.approx(true_curve[0], abs=0.15)
    assert offset == pytest.approx(true_curve[1], abs=0.15)
    q = np.exp(log_like(predicted, mu, (slope, offset)))
    assert q.mean() == pytest.approx((actual >= mu).mean(), abs=0.01)  # as often as it happens
