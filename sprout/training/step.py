"""One jitted training step and the validation forward pass, written functionally over NNX state.

The first layer runs on the batch's distinct input shows only (see `preactivation_compact`).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sprout.model.autoencoder import Autoencoder
from sprout.training.batches import Batch
from sprout.training.config import TrainConfig
from sprout.training.losses import masked_huber, multinomial_nll, uncertainty_weighted


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Adam chained with reduce-on-plateau (its scale multiplies Adam's updates)."""
    return optax.chain(
        optax.adam(config.learning_rate),
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


def batch_losses(model: Autoencoder, batch: Batch, noise_key, huber_delta: float, train: bool):
    """Total loss and (presence loss, rating loss, presence logits [B, C]) of one batch."""
    pre = preactivation_compact(model, batch)
    logits, ratings = model.outputs_from_preactivation(pre, train=train, noise_key=noise_key)
    presence = multinomial_nll(logits, batch.target_items, batch.target_mask)
    rating = masked_huber(ratings, batch.target_items, batch.target_values, batch.target_rated, huber_delta)
    total = uncertainty_weighted(presence, rating, model.log_var_presence[...], model.log_var_rating[...])
    return total, (presence, rating, logits)


@partial(jax.jit, static_argnames=("graphdef", "tx", "huber_delta"), donate_argnames=("params", "opt_state"))
def train_step(graphdef, params, opt_state, batch: Batch, noise_key, *, tx, huber_delta: float):
    """One optimiser step: returns (params, opt_state, total, presence, rating)."""

    def loss_of(p):
        return batch_losses(nnx.merge(graphdef, p), batch, noise_key, huber_delta, train=True)

    (total, (presence, rating, _)), grads = jax.value_and_grad(loss_of, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params, value=total)
    params = optax.apply_updates(params, updates)
    return params, opt_state, total, presence, rating


@partial(jax.jit, static_argnames=("graphdef", "huber_delta"))
def eval_step(graphdef, params, batch: Batch, *, huber_delta: float):
    """Losses and presence logits [B, C] without noise (validation)."""
    total, (presence, rating, logits) = batch_losses(nnx.merge(graphdef, params), batch, None, huber_delta, train=False)
    return total, presence, rating, logits

