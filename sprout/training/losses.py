"""Training losses: pure ``jnp`` functions of model outputs and sparse targets (jit-friendly).

- Presence: multinomial NLL (Mult-VAE): the softmax over the whole corpus makes shows compete,
  so only the profile's own shows need a target term; ``-log`` keeps rare shows' loss linear.
- Ratings: Huber (quadratic near 0, linear beyond ``delta``) on rated entries only, since user
  ratings are noisy and unrated entries hold an imputed value, not a score.
- The two are balanced by homoscedastic uncertainty weighting with learnable log variances.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _per_user_mean(per_entry: jax.Array, weights: jax.Array) -> jax.Array:
    """Σ_j weights·per_entry / max(Σ_j weights, 1) per user, then the batch mean: [B, L] -> scalar."""
    totals = jnp.sum(jnp.where(weights > 0, weights * per_entry, 0.0), axis=-1)  # [B]
    counts = jnp.maximum(jnp.sum(weights, axis=-1), 1.0)  # [B]
    return jnp.mean(totals / counts)


def multinomial_nll(logits: jax.Array, target_items: jax.Array, target_weights: jax.Array) -> jax.Array:
    """Mean over users of ``-Σ_{i in profile} w_i·log_softmax(logits)_i / max(Σ_i w_i, 1)``.

    logits [B, C], target_items [B, L] int, target_weights [B, L] bool (a mask) or float -> scalar.
    Items within one user are assumed distinct (a profile is a set).
    """
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, C]
    picked = jnp.take_along_axis(log_probs, target_items, axis=-1)  # [B, L]
    return _per_user_mean(-picked, target_weights.astype(jnp.float32))


def emphasised_weights(target_mask: jax.Array, target_kept: jax.Array, kept_weight: float) -> jax.Array:
    """Target weights of emphasised denoising: 1 for entries dropped from the input, ``kept_weight``
    for entries the network saw (0: it is scored only on what it could not copy).

    target_mask, target_kept [B, L] bool -> [B, L] float32.
    """
    return jnp.where(target_kept, kept_weight, 1.0) * target_mask.astype(jnp.float32)


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
    """Batch mean of KL(N(mean, exp(log_var)) || N(0, I)) summed over the latent: [B, Z] -> scalar."""
    per_user = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)  # [B]
    return jnp.mean(per_user)


def multinomial_nll_dense(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Same loss with dense 0/1 targets [B, C]: ``-Σ targets·log_softmax / max(Σ targets, 1)``, batch mean."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)  # [B, C]
    return _per_user_mean(-log_probs, targets.astype(jnp.float32))


def huber(residual: jax.Array, delta: float = 1.0) -> jax.Array:
    """Elementwise Huber: ``r²/2`` for ``|r| <= delta``, else ``delta·(|r| - delta/2)``."""
    magnitude = jnp.abs(residual)
    quadratic = jnp.minimum(magnitude, delta)
    return 0.5 * quadratic**2 + delta * (magnitude - quadratic)


def masked_huber(
    pred: jax.Array, target_items: jax.Array, target_values: jax.Array, rated_mask: jax.Array, delta: float = 1.0
) -> jax.Array:
    """Huber loss on rated entries only, per user divided by ``max(rated count, 1)``, batch mean.

    pred [B, C], target_items [B, L] int, target_values [B, L], rated_mask [B, L] bool -> scalar.
    Unrated and padding entries contribute nothing (their target values are never read).
    """
    predicted = jnp.take_along_axis(pred.astype(jnp.float32), target_items, axis=-1)  # [B, L]
    targets = jnp.where(rated_mask, target_values.astype(jnp.float32), predicted)  # [B, L]; NaN-safe
    return _per_user_mean(huber(predicted - targets, delta), rated_mask.astype(jnp.float32))


def uncertainty_weighted(
    l_presence: jax.Array, l_rating: jax.Array, s_presence: jax.Array, s_rating: jax.Array
) -> jax.Array:
    """``exp(-s_p)·L_p + s_p + exp(-s_r)·L_r + s_r`` with ``s`` the learnable log variances.

    The ``+ s`` terms stop the weights from turning a loss off: d/ds_p = 1 - exp(-s_p)·L_p,
    which settles at ``s_p = log L_p``.
    """
    s_presence = jnp.asarray(s_presence, jnp.float32)
    s_rating = jnp.asarray(s_rating, jnp.float32)
    return jnp.exp(-s_presence) * l_presence + s_presence + jnp.exp(-s_rating) * l_rating + s_rating
