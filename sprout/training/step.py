"""One jitted training step and the validation forward pass, written functionally over NNX state.

The first layer runs on the batch's flat kept entries (a gather of weight rows and a segment sum
into their users), so its cost follows the entry count, not ``B × corpus``.
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


def preactivation_flat(model: Autoencoder, items, values, users, n_users: int) -> jax.Array:
    """First layer before swish from flat entries: items/values/users [N] -> [n_users, H].

    Padding entries carry ``users == n_users`` and land in a dropped extra segment.
    """
    corpus_size = model.config.corpus_size
    kernel = model.encoder_input.kernel[...]  # [2C, H]
    bias = model.encoder_input.bias[...]  # [H]
    rows = kernel[items] + values[:, None].astype(kernel.dtype) * kernel[items + corpus_size]  # [N, H]
    summed = jax.ops.segment_sum(rows, users, num_segments=n_users + 1)[:n_users]  # [B, H]
    return summed + bias


def batch_losses(model: Autoencoder, batch: Batch, noise_key, huber_delta: float, train: bool):
    """Total loss and (presence loss, rating loss, presence logits [B, C]) of one batch."""
    size = batch.target_items.shape[0]
    pre = preactivation_flat(model, batch.input_items, batch.input_values, batch.input_users, size)
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

