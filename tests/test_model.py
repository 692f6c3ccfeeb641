"""The autoencoder: sizes, sparse first layer, padding, noise, dropout and weight files."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sprout.model import (
    Autoencoder,
    ModelConfig,
    abstract_autoencoder,
    dense_profile,
    first_layer_dense,
    first_layer_sparse,
    load_config,
    load_weights,
    parameter_count,
    save_weights,
)

TINY = ModelConfig.tiny()


def random_profiles(key, batch: int, length: int, corpus_size: int, min_len: int = 1):
    """Padded sparse profiles with distinct items per user: items/values/mask [B, L]."""
    item_key, value_key, len_key = jax.random.split(key, 3)
    items = jax.vmap(lambda k: jax.random.permutation(k, corpus_size)[:length])(jax.random.split(item_key, batch))
    values = jax.random.normal(value_key, (batch, length))
    lengths = jax.random.randint(len_key, (batch, 1), min_len, length + 1)
    mask = jnp.arange(length)[None, :] < lengths
    return items.astype(jnp.int32), values, mask


@pytest.fixture(scope="module")
def model() -> Autoencoder:
    return Autoencoder(TINY, nnx.Rngs(0))


@pytest.fixture(scope="module")
def profiles():
    return random_profiles(jax.random.key(1), batch=5, length=12, corpus_size=TINY.corpus_size)


def test_default_parameter_count_is_exact_without_allocating():
    abstract = abstract_autoencoder(ModelConfig())
    # 12000·2048+2048 + 2048·512+512 + 2·(512·1024+1024 + 1024·2048+2048 + 2048·6000+6000) + 2 log-vars
    assert parameter_count(abstract) == 55_464_162
    kernel = abstract.encoder_input.kernel.get_value()
    assert isinstance(kernel, jax.ShapeDtypeStruct) and kernel.shape == (12000, 2048)


def test_tiny_parameter_count_matches_layer_sizes(model):
    c, h, z, (d1, d2) = TINY.corpus_size, TINY.encoder_hidden, TINY.bottleneck, TINY.decoder_hidden
    head = z * d1 + d1 + d1 * d2 + d2 + d2 * c + c
    assert parameter_count(model) == 2 * c * h + h + h * z + z + 2 * head + 2


def test_uncertainty_weights_start_at_zero(model):
    assert float(model.log_var_presence[...]) == 0.0
    assert float(model.log_var_rating[...]) == 0.0


def test_output_shapes(model, profiles):
    logits, ratings = model(*profiles)
    assert logits.shape == ratings.shape == (5, TINY.corpus_size)
    assert model.encode(*profiles).shape == (5, TINY.bottleneck)
    assert model.preactivation(*profiles).shape == (5, TINY.encoder_hidden)
    assert model.entry_contributions(*profiles).shape == (5, 12, TINY.encoder_hidden)


def test_sparse_first_layer_equals_dense_matmul():
    corpus, hidden = 50, 16
    k1, k2, k3 = jax.random.split(jax.random.key(2), 3)
    kernel = jax.random.normal(k1, (2 * corpus, hidden))
    bias = jax.random.normal(k2, (hidden,))
    items, values, mask = random_profiles(k3, batch=4, length=9, corpus_size=corpus)
    x = np.zeros((4, 2 * corpus), np.float32)
    for b in range(4):
        for j in range(9):
            if mask[b, j]:
                x[b, items[b, j]] = 1.0
                x[b, corpus + items[b, j]] = values[b, j]
    np.testing.assert_allclose(dense_profile(items, values, mask, corpus), x, rtol=1e-6)
    sparse = first_layer_sparse(kernel, bias, items, values, mask)
    np.testing.assert_allclose(sparse, first_layer_dense(kernel, bias, jnp.asarray(x)), rtol=1e-5, atol=1e-5)


def test_sparse_forward_equals_dense_forward(model, profiles):
    sparse_logits, sparse_ratings = model(*profiles)
    dense_logits, dense_ratings = model.forward_dense(model.to_dense(*profiles))
    np.testing.assert_allclose(sparse_logits, dense_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sparse_ratings, dense_ratings, rtol=1e-5, atol=1e-5)


def test_padding_has_no_effect(model, profiles):
    items, values, mask = profiles
    garbage_items = jnp.where(mask, items, 7)
    garbage_values = jnp.where(mask, values, jnp.nan)
    padded = (jnp.pad(garbage_items, ((0, 0), (0, 4)), constant_values=3),
              jnp.pad(garbage_values, ((0, 0), (0, 4)), constant_values=99.0),
              jnp.pad(mask, ((0, 0), (0, 4))))
    for clean, noisy in zip(model(*profiles), model(*padded), strict=True):
        np.testing.assert_allclose(clean, noisy, rtol=1e-6, atol=1e-6)


def test_holding_out_an_entry_is_a_rank_one_update(model, profiles):
    items, values, mask = profiles
    held_out = 0
    pre = model.preactivation(items, values, mask) - model.entry_contributions(items, values, mask)[:, held_out]
    without = mask.at[:, held_out].set(False)
    np.testing.assert_allclose(pre, model.preactivation(items, values, without), rtol=1e-5, atol=1e-5)
    expected = model(items, values, without)
    for got, want in zip(model.outputs_from_preactivation(pre), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_rating_columns_match_full_head(model, profiles):
    z = model.encode(*profiles)
    columns = jnp.array([3, 0, 150, 42])
    np.testing.assert_allclose(model.decode_ratings(z, columns), model.decode_ratings(z)[:, columns], rtol=1e-5, atol=1e-6)


def test_noise_only_in_training(model, profiles):
    clean = model.encode(*profiles)
    np.testing.assert_array_equal(clean, model.encode(*profiles, train=False, noise_key=jax.random.key(0)))
    noisy = model.encode(*profiles, train=True, noise_key=jax.random.key(0))
    assert not np.allclose(clean, noisy)
    assert float(jnp.std(noisy - clean)) == pytest.approx(TINY.bottleneck_noise, rel=0.2)
    again = model.encode(*profiles, train=True, noise_key=jax.random.key(0))
    np.testing.assert_array_equal(noisy, again)
    with pytest.raises(ValueError, match="noise_key"):
        model.encode(*profiles, train=True)


def test_variational_bottleneck_samples_in_training_and_serves_its_mean(profiles):
    config = ModelConfig.tiny(variational=True)
    model = Autoencoder(config, nnx.Rngs(0))
    assert model.encoder_bottleneck.kernel[...].shape == (config.encoder_hidden, 2 * config.bottleneck)
    pre = model.preactivation(*profiles)
    mean, log_var = model.bottleneck_distribution(pre)
    assert mean.shape == log_var.shape == (5, config.bottleneck)
    np.testing.assert_array_equal(model.encode(*profiles), mean)
    sampled = model.encode(*profiles, train=True, noise_key=jax.random.key(0))
    # z = mean + exp(log_var / 2) * eps: the standardised draws are N(0, 1)
    eps = (sampled - mean) / jnp.exp(0.5 * log_var)
    assert float(jnp.std(eps)) == pytest.approx(1.0, rel=0.25)
    logits, ratings = model(*profiles)
    assert logits.shape == ratings.shape == (5, config.corpus_size)


def test_forward_runs_under_jit(model, profiles):
    @nnx.jit(static_argnames="train")
    def forward(m, items, values, mask, key, train):
        return m(items, values, mask, train=train, noise_key=key)

    eager = model(*profiles)
    jitted = forward(model, *profiles, jax.random.key(0), False)
    np.testing.assert_allclose(eager[0], jitted[0], rtol=1e-5, atol=1e-5)


def test_save_load_round_trip(model, profiles, tmp_path):
    path = save_weights(model, tmp_path / "model.npz")
    assert load_config(path) == TINY
    with np.load(path, allow_pickle=False) as data:
        assert "presence_head/output/kernel" in data.files and "log_var_rating" in data.files
    loaded = load_weights(path)
    for want, got in zip(model(*profiles), loaded(*profiles), strict=True):
        np.testing.assert_array_equal(want, got)
    assert parameter_count(loaded) == parameter_count(model)


def test_load_rejects_mismatched_shapes(model, tmp_path):
    path = save_weights(model, tmp_path / "model.npz")
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["rating_head/output/bias"] = np.zeros(3, np.float32)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match="rating_head/output/bias"):
        load_weights(bad)
    del arrays["rating_head/output/bias"]
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match="missing"):
        load_weights(bad)


def test_bfloat16_weights_round_trip(profiles, tmp_path):
    config = ModelConfig.tiny(param_dtype="bfloat16", dtype="bfloat16")
    model = Autoencoder(config, nnx.Rngs(0))
    loaded = load_weights(save_weights(model, tmp_path / "bf16.npz"))
    assert loaded.encoder_input.kernel[...].dtype == jnp.bfloat16
    np.testing.assert_array_equal(
        np.asarray(model(*profiles)[0], np.float32), np.asarray(loaded(*profiles)[0], np.float32)
    )


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        ModelConfig(corpus_size=0)
    with pytest.raises(ValueError):
        ModelConfig(dtype="int8")
    assert ModelConfig.tiny().input_size == 400
