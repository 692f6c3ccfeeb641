"""Training losses against hand-worked values and numpy references, plus a tiny training run."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sprout.model import Autoencoder, ModelConfig
from sprout.training.batches import make_batch
from sprout.training.config import TrainConfig
from sprout.training.step import make_optimizer, train_step
from sprout.training.losses import (
    huber,
    masked_huber,
    multinomial_nll,
    multinomial_nll_dense,
    uncertainty_weighted,
)


def test_multinomial_nll_by_hand():
    # user 0: logits (0, 0, ln 2) -> softmax (1/4, 1/4, 1/2); profile {0, 2}
    # user 1: uniform logits -> every show 1/3; profile {1}
    logits = jnp.array([[0.0, 0.0, math.log(2.0)], [1.0, 1.0, 1.0]])
    items = jnp.array([[0, 2], [1, 0]])
    mask = jnp.array([[True, True], [True, False]])
    user0 = -(math.log(0.25) + math.log(0.5)) / 2
    user1 = -math.log(1 / 3)
    assert float(multinomial_nll(logits, items, mask)) == pytest.approx((user0 + user1) / 2, rel=1e-6)
    dense = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert float(multinomial_nll_dense(logits, dense)) == pytest.approx((user0 + user1) / 2, rel=1e-6)


def test_multinomial_nll_sparse_equals_dense_and_numpy():
    rng = np.random.default_rng(0)
    batch, corpus, length = 6, 40, 8
    logits = rng.normal(size=(batch, corpus)).astype(np.float32)
    items = np.stack([rng.permutation(corpus)[:length] for _ in range(batch)])
    mask = np.arange(length)[None, :] < rng.integers(0, length + 1, size=(batch, 1))
    mask[0] = False  # an empty profile contributes 0 but still counts in the batch mean
    dense = np.zeros((batch, corpus), np.float32)
    for b in range(batch):
        dense[b, items[b][mask[b]]] = 1.0
    log_probs = logits - logits.max(1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
    reference = np.mean(-(dense * log_probs).sum(1) / np.maximum(dense.sum(1), 1))
    sparse = float(multinomial_nll(jnp.asarray(logits), jnp.asarray(items), jnp.asarray(mask)))
    assert sparse == pytest.approx(reference, rel=1e-5)
    assert float(multinomial_nll_dense(jnp.asarray(logits), jnp.asarray(dense))) == pytest.approx(reference, rel=1e-5)


def test_huber_piecewise():
    residual = jnp.array([0.0, 0.5, -1.0, 2.0, -3.0])
    np.testing.assert_allclose(huber(residual), [0.0, 0.125, 0.5, 1.5, 2.5], rtol=1e-6)
    np.testing.assert_allclose(huber(residual, delta=2.0), [0.0, 0.125, 0.5, 2.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(huber(residual), optax.losses.huber_loss(residual, delta=1.0), rtol=1e-6)


def test_masked_huber_by_hand_ignores_unrated():
    pred = jnp.array([[0.0, 1.0, 2.0], [0.5, 0.5, 0.5]])
    items = jnp.array([[0, 1, 2], [2, 0, 1]])
    values = jnp.array([[0.5, 4.0, jnp.nan], [0.5, -1.5, 100.0]])
    rated = jnp.array([[True, True, False], [True, True, False]])
    user0 = (0.5 * 0.5**2 + (3.0 - 0.5)) / 2  # residuals -0.5 and -3; item 2 unrated
    user1 = (0.0 + (2.0 - 0.5)) / 2  # residuals 0 and 2; item 1 unrated
    assert float(masked_huber(pred, items, values, rated)) == pytest.approx((user0 + user1) / 2, rel=1e-6)


def test_masked_huber_unrated_entries_get_no_gradient():
    pred = jnp.zeros((1, 4))
    items = jnp.array([[0, 1, 2]])
    values = jnp.array([[1.0, jnp.nan, 5.0]])
    rated = jnp.array([[True, False, False]])
    grad = jax.grad(lambda p: masked_huber(p, items, values, rated))(pred)
    np.testing.assert_allclose(grad, [[-1.0, 0.0, 0.0, 0.0]])  # d/dp ½(p-1)² at 0, one rated entry
    nothing_rated = masked_huber(pred, items, values, jnp.zeros_like(rated))
    assert float(nothing_rated) == 0.0


def test_uncertainty_weighting_formula_and_gradient():
    l_p, l_r, s_p, s_r = 5.0, 0.05, 0.3, -1.2
    expected = math.exp(-s_p) * l_p + s_p + math.exp(-s_r) * l_r + s_r
    assert float(uncertainty_weighted(l_p, l_r, s_p, s_r)) == pytest.approx(expected, rel=1e-6)
    d_sp, d_sr = jax.grad(uncertainty_weighted, argnums=(2, 3))(l_p, l_r, s_p, s_r)
    assert float(d_sp) == pytest.approx(1 - math.exp(-s_p) * l_p, rel=1e-5)
    assert float(d_sr) == pytest.approx(1 - math.exp(-s_r) * l_r, rel=1e-5)
    # the optimum of each log variance is log of its loss
    assert float(jax.grad(uncertainty_weighted, argnums=2)(l_p, l_r, math.log(l_p), s_r)) == pytest.approx(0, abs=1e-6)


def test_losses_jit():
    logits = jnp.zeros((2, 5))
    items = jnp.array([[0, 1], [2, 3]])
    mask = jnp.ones((2, 2), bool)
    assert float(jax.jit(multinomial_nll)(logits, items, mask)) == pytest.approx(math.log(5), rel=1e-6)
    assert float(jax.jit(masked_huber)(logits, items, jnp.ones((2, 2)), mask)) == pytest.approx(0.5)


def test_the_real_training_step_lowers_the_loss_on_learnable_profiles():
    """`make_batch` (with its per-sample input dropout) and the jitted `train_step`, as the loop runs them."""
    config = ModelConfig.tiny()
    train_config = TrainConfig.tiny()
    corpus, users, length = config.corpus_size, 256, 20
    rng = np.random.default_rng(0)
    # Two taste clusters: each user's shows come from one half of the corpus, rated by cluster.
    cluster = rng.integers(0, 2, users)  # [U]
    items = np.concatenate([
        np.sort(rng.choice(corpus // 2, length, replace=False)) + c * (corpus // 2) for c in cluster
    ]).astype(np.int32)  # [U * L]
    values = (np.repeat(np.where(cluster == 1, 1.0, -1.0), length) + 0.1 * rng.normal(size=users * length))
    values = values.astype(np.float32)
    rated = rng.random(users * length) < 0.7
    indptr = np.arange(0, users * length + 1, length, dtype=np.int64)  # [U + 1]

    graphdef, params = nnx.split(Autoencoder(config, nnx.Rngs(0)))
    tx = make_optimizer(train_config.model_copy(update={"learning_rate": 3e-3}))
    opt_state = tx.init(params)
    losses, key = [], jax.random.key(1)
    for step in range(120):
        batch = make_batch(indptr, items, values, rated, rng.choice(users, 64, replace=False), rng, corpus_size=corpus)
        params, opt_state, total, presence, rating = train_step(
            graphdef, params, opt_state, batch, jax.random.fold_in(key, step), tx=tx, huber_delta=train_config.huber_delta
        )
        losses.append(float(total))
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), (losses[:3], losses[-3:])
    model = nnx.merge(graphdef, params)
    assert float(model.log_var_rating[...]) != 0.0, "uncertainty weights are trained too"
