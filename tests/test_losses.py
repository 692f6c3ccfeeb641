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
from sprout.training.step import LossSettings, decays, make_optimizer, scaled_gradient, train_step
from sprout.training.losses import (
    emphasised_weights,
    gaussian_kl,
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
        params, opt_state, total, presence, rating, _ = train_step(
            graphdef, params, opt_state, batch, jax.random.fold_in(key, step), tx=tx, loss=LossSettings.of(train_config)
        )
        losses.append(float(total))
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), (losses[:3], losses[-3:])
    model = nnx.merge(graphdef, params)
    assert float(model.log_var_rating[...]) != 0.0, "uncertainty weights are trained too"


def test_emphasised_weights_score_dropped_entries_fully_and_kept_ones_by_the_weight():
    mask = jnp.array([[True, True, True, False]])
    kept = jnp.array([[True, False, True, False]])
    np.testing.assert_array_equal(emphasised_weights(mask, kept, 0.0), [[0.0, 1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(emphasised_weights(mask, kept, 0.5), [[0.5, 1.0, 0.5, 0.0]])
    np.testing.assert_array_equal(emphasised_weights(mask, kept, 1.0), [[1.0, 1.0, 1.0, 0.0]])
    # weight 0 on kept entries: the loss is the NLL of the dropped entry alone
    logits = jnp.array([[0.0, 0.0, math.log(2.0), 0.0]])
    items = jnp.array([[0, 2, 1, 3]])
    nll = float(multinomial_nll(logits, items, emphasised_weights(mask, kept, 0.0)))
    assert nll == pytest.approx(-math.log(2.0 / 5.0), rel=1e-6)


def test_gaussian_kl_by_hand():
    zero = jnp.zeros((2, 3))
    assert float(gaussian_kl(zero, zero)) == pytest.approx(0.0, abs=1e-7)
    # mean 1 in each of 3 dimensions, unit variance: 3 * 1/2
    assert float(gaussian_kl(jnp.ones((2, 3)), zero)) == pytest.approx(1.5, rel=1e-6)
    # variance e, mean 0, one dimension: (e - 1 - 1) / 2
    assert float(gaussian_kl(jnp.zeros((1, 1)), jnp.ones((1, 1)))) == pytest.approx((math.e - 2) / 2, rel=1e-6)


def test_scaled_gradient_keeps_the_value_and_scales_the_gradient():
    x = jnp.array([1.0, -2.0, 3.0])
    for scale in (0.0, 0.25, 1.0):
        np.testing.assert_array_equal(scaled_gradient(x, scale), x)
        grad = jax.grad(lambda v: jnp.sum(scaled_gradient(v, scale) ** 2))(x)
        np.testing.assert_allclose(grad, scale * 2 * x, rtol=1e-6)


def test_weight_decay_shrinks_kernels_only():
    _, params = nnx.split(Autoencoder(ModelConfig.tiny(), nnx.Rngs(0)))
    mask = decays(params)

    def flag(tree) -> bool:
        (leaf,) = jax.tree.leaves(tree)
        return bool(leaf)

    assert flag(mask["encoder_input"]["kernel"]) and not flag(mask["encoder_input"]["bias"])
    assert not flag(mask["log_var_presence"])
    tx = make_optimizer(TrainConfig.tiny().model_copy(update={"weight_decay": 0.5}))
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero_grads, tx.init(params), params, value=jnp.asarray(1.0))
    kernel = params["encoder_input"]["kernel"][...]
    lr = TrainConfig.tiny().learning_rate
    np.testing.assert_allclose(updates["encoder_input"]["kernel"][...], -lr * 0.5 * kernel, rtol=1e-5, atol=1e-9)
    assert not np.any(updates["encoder_input"]["bias"][...])


def _losses_setup(model_config, train_config):
    rng = np.random.default_rng(3)
    users, length = 64, 12
    items = np.concatenate([rng.choice(model_config.corpus_size, length, replace=False) for _ in range(users)])
    indptr = np.arange(0, users * length + 1, length, dtype=np.int64)
    values = rng.normal(size=len(items)).astype(np.float32)
    batch = make_batch(indptr, items.astype(np.int32), values, np.ones(len(items), bool), np.arange(32), rng,
                       corpus_size=model_config.corpus_size)
    graphdef, params = nnx.split(Autoencoder(model_config, nnx.Rngs(0)))
    return graphdef, params, batch


def test_without_the_rating_gradient_the_encoder_learns_from_presence_alone():
    from sprout.training.step import batch_losses

    config = ModelConfig.tiny()
    graphdef, params, batch = _losses_setup(config, TrainConfig.tiny())

    def rating_loss(p, share):
        _, (_, rating, _) = batch_losses(
            nnx.merge(graphdef, p), batch, None, LossSettings(encoder_rating_gradient=share), 0.0, train=False
        )
        return rating

    cut = jax.grad(rating_loss)(params, 0.0)
    full = jax.grad(rating_loss)(params, 1.0)
    assert not np.any(cut["encoder_input"]["kernel"][...]) and not np.any(cut["encoder_bottleneck"]["kernel"][...])
    assert np.any(full["encoder_input"]["kernel"][...])
    # the rating head itself still learns
    np.testing.assert_allclose(cut["rating_head"]["output"]["kernel"][...], full["rating_head"]["output"]["kernel"][...],
                               rtol=1e-5, atol=1e-7)


def test_variational_training_step_adds_the_kl_term():
    config = ModelConfig.tiny(variational=True)
    train_config = TrainConfig.tiny()
    graphdef, params, batch = _losses_setup(config, train_config)
    tx = make_optimizer(train_config)
    settings = LossSettings.of(train_config)
    key = jax.random.key(0)
    copy = jax.tree.map(jnp.copy, params)
    *_, total_off, presence_off, rating_off, kl = train_step(graphdef, copy, tx.init(copy), batch, key, 0.0,
                                                             tx=tx, loss=settings)
    copy = jax.tree.map(jnp.copy, params)
    *_, total_on, presence_on, rating_on, kl_on = train_step(graphdef, copy, tx.init(copy), batch, key, 0.5,
                                                             tx=tx, loss=settings)
    assert float(kl) > 0 and float(kl_on) == pytest.approx(float(kl), rel=1e-6)
    # log variances start at 0: both losses enter with weight 1
    assert float(total_on) - float(total_off) == pytest.approx(0.5 * float(kl), rel=1e-4)
