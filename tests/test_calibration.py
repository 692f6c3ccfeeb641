"""Calibrated presence probabilities: the temperature fit, the calibration figures, the like curve."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sprout.evaluation.calibration import candidate_log_probabilities, presence_calibration, reliability
from sprout.model.rating_path import fit_like_curve, log_like
from sprout.training.temperature import fit_inverse_temperature


def four_users():
    """Four users with the same logits over shows (a, b, c) = (5, 0, 1); a is in every profile.
    Three users hold out c, one holds out b: the likelihood is best where p(c) = 3/4 among {b, c},
    i.e. e^β / (1 + e^β) = 3/4, β = ln 3 (the profile show's logit does not matter)."""
    logits = np.tile([5.0, 0.0, 1.0], (4, 1))
    fold_in = np.zeros((4, 3), bool)
    fold_in[:, 0] = True
    held_out = np.zeros((4, 3), bool)
    held_out[:3, 2] = True
    held_out[3, 1] = True
    return logits, fold_in, held_out


def test_the_temperature_is_the_hand_computed_one():
    """Top 1 is show c for everyone and holds 3 of the 4 held-out entries, so p(c) must be 3/4
    among {b, c}: e^β / (1 + e^β) = 3/4, β = ln 3 (the profile show's logit does not matter)."""
    logits, fold_in, held_out = four_users()
    beta = fit_inverse_temperature(logits, fold_in, held_out, k=1)
    assert beta == pytest.approx(math.log(3.0), rel=1e-6)
    calibrated = presence_calibration(beta * logits, fold_in, held_out, k=1)
    assert calibrated["calibration@1"] == pytest.approx(1.0, rel=1e-6)


def test_the_fit_does_not_depend_on_a_per_user_shift_of_the_logits():
    logits, fold_in, held_out = four_users()
    shifted = logits + np.array([[0.0], [3.0], [-7.0], [100.0]])  # log-softmax outputs differ like this
    assert fit_inverse_temperature(shifted, fold_in, held_out, k=1) == pytest.approx(math.log(3.0), rel=1e-6)


def test_an_overconfident_scale_is_cooled_and_a_timid_one_sharpened():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(400, 60)) * 2.0  # [U, C] true logits
    fold_in = np.zeros_like(truth, bool)
    held_out = np.zeros_like(truth, bool)
    for user in range(len(truth)):
        p = np.exp(truth[user]) / np.exp(truth[user]).sum()
        held_out[user, rng.choice(60, size=1, p=p)] = True
    assert fit_inverse_temperature(truth, fold_in, held_out, k=5) == pytest.approx(1.0, abs=0.2)  # the truth
    assert fit_inverse_temperature(truth * 50, fold_in, held_out, k=5) < 1 / 20  # 50× too sharp
    assert fit_inverse_temperature(truth / 50, fold_in, held_out, k=5) > 20  # 50× too flat


def test_probabilities_sum_to_one_over_the_shows_not_in_the_profile():
    logits, fold_in, _ = four_users()
    log_p = candidate_log_probabilities(logits, fold_in)
    assert np.all(np.isneginf(log_p[:, 0]))
    assert np.exp(log_p).sum(axis=1) == pytest.approx(np.ones(4))
    assert np.exp(log_p[0, 2]) == pytest.approx(math.e / (1 + math.e))


def test_calibration_counts_expected_and_actual_hits():
    logits, fold_in, held_out = four_users()
    calibrated = logits * math.log(3.0)  # p(b) = 1/4, p(c) = 3/4
    top_one = presence_calibration(calibrated, fold_in, held_out, k=1)
    assert top_one["expected_hits@1"] == pytest.approx(4 * 0.75)  # c first for everyone, one held-out entry each
    assert top_one["actual_hits@1"] == 3
    assert top_one["calibration@1"] == pytest.approx(1.0)
    timid = presence_calibration(calibrated / 10, fold_in, held_out, k=1)  # p(c) ≈ 0.53: too timid
    assert timid["calibration@1"] > 1.3
    sharp = presence_calibration(calibrated * 10, fold_in, held_out, k=1)  # p(c) ≈ 1: overconfident
    assert sharp["calibration@1"] == pytest.approx(0.75, abs=1e-3)
    points = reliability(calibrated, fold_in, held_out, k=2)
    assert sum(p["count"] for p in points) == 8
    assert all(0 <= p["observed"] <= 1 for p in points)


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
