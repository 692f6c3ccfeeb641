"""One jitted training step and the validation forward pass, written functionally over NNX state.

The first layer runs on the batch's distinct input shows only (see `preactivation_compact`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sprout.model.autoencoder import Autoencoder
from sprout.training.batches import Batch
from sprout.training.config import TrainConfig
from sprout.training.losses import (
    emphasised_weights,
    gaussian_kl,
    masked_huber,
    multinomial_nll,
    uncertainty_weighted,
)


@dataclass(frozen=True)
class LossSettings:
    """The loss's fixed settings (hashable: the compiled step is specialised on them)."""

    huber_delta: float = 1.0
    kept_target_weight: float = 1.0  # presence-loss weight of targets the input kept (dropped ones: 1)
    encoder_rating_gradient: float = 1.0  # share of the rating loss's gradient that reaches the encoder

    @classmethod
    def of(cls, config: TrainConfig) -> LossSettings:
        return cls(config.huber_delta, config.kept_target_weight, config.encoder_rating_gradient)


def decays(params) -> object:
    """Weight-decay mask: the layers' kernels only (not biases, log variances or fitted variables)."""
    def is_kernel(path, _) -> bool:
        return any(getattr(part, "key", None) == "kernel" for part in path)

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam (decoupled weight decay on kernels when ``weight_decay`` > 0) chained with
    reduce-on-plateau (its scale multiplies Adam's updates)."""
    return optax.chain(
        optax.adamw(config.learning_rate, weight_decay=config.weight_decay, mask=decays),
        optax.contrib.reduce_on_plateau(
            factor=config.plateau_factor, patience=config.plateau_patience, rtol=config.plateau_rtol,
            cooldown=config.plateau_cooldown, accumulation_size=config.plateau_accumulation_size,
        ),
    )


def lr_scale(opt_state) -> jax.Array:
    return opt_state[1].scale


def preactivation_compact(model: Autoencoder, batch: Batch) -> jax.Array:
    """First layer before swish over the batch's distinct input shows only: -> [B, H].

    The kept entries are scattered into a small dense ``[B, 2U]`` matrix that multiplies the
    ``2U`` kernel rows of those shows. On CPU this beats both a per-entry gather-sum (memory and
    scatter bound) and the full ``[B, 2C]`` product, and its gradient touches only those rows.
    """
    corpus_size = model.config.corpus_size
    kernel = model.encoder_input.kernel[...]  # [2C, H]
    size = batch.target_items.shape[0]
    distinct = batch.input_columns.shape[0]
    rows = jnp.concatenate([batch.input_columns, batch.input_columns + corpus_size])  # [2U]
    inputs = jnp.zeros((size + 1, 2 * distinct), kernel.dtype)  # padding entries land in row B
    inputs = inputs.at[batch.input_users, batch.input_items].add(1.0)
    inputs = inputs.at[batch.input_users, distinct + batch.input_items].add(batch.input_values.astype(kernel.dtype))
    weights = kernel if distinct == corpus_size else kernel[rows]  # [2U, H]
    return inputs[:size] @ weights + model.encoder_input.bias[...]  # [B, H]


def scaled_gradient(x: jax.Array, scale: float) -> jax.Array:
    """``x`` unchanged going forward; its gradient multiplied by ``scale`` going back."""
    if scale == 1.0:
        return x
    return scale * x + (1.0 - scale) * jax.lax.stop_gradient(x)


def batch_losses(model: Autoencoder, batch: Batch, noise_key, loss: LossSettings, kl_weight, train: bool):
    """Total loss and (presence loss, rating loss, KL) of one batch.

    The KL term joins the presence loss (they form the presence head's evidence bound), so the
    uncertainty weighting scales them together.
    """
    pre = preactivation_compact(model, batch)  # [B, H]
    mean, log_var = model.bottleneck_distribution(pre)  # [B, Z], [B, Z] or None
    z = model.sample_bottleneck(mean, log_var, train=train, noise_key=noise_key)  # [B, Z]
    logits = model.decode_presence(z)  # [B, C]
    ratings = model.decode_ratings(scaled_gradient(z, loss.encoder_rating_gradient))  # [B, C]
    weights = emphasised_weights(batch.target_mask, batch.target_kept, loss.kept_target_weight)  # [B, L]
    presence = multinomial_nll(logits, batch.target_items, weights)
    kl = jnp.zeros((), jnp.float32) if log_var is None else gaussian_kl(mean, log_var)
    rating = masked_huber(ratings, batch.target_items, batch.target_values, batch.target_rated, loss.huber_delta)
    total = uncertainty_weighted(
        presence + kl_weight * kl, rating, model.log_var_presence[...], model.log_var_rating[...]
    )
    return total, (presence, rating, kl)


@partial(jax.jit, static_argnames=("graphdef", "tx", "loss"), donate_argnames=("params", "opt_state"))
def train_step(graphdef, params, opt_state, batch: Batch, noise_key, kl_weight=0.0, *, tx, loss: LossSettings):
    """One optimiser step: returns (params, opt_state, total, presence, rating, kl)."""

    def loss_of(p):
        return batch_losses(nnx.merge(graphdef, p), batch, noise_key, loss, kl_weight, train=True)

    (total, (presence, rating, kl)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=total)
    params = optax.apply_updates(params, updates)
    return params, opt_state, total, presence, rating, kl

