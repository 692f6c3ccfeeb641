"""The presence map: a monotone map of the blended logits that makes their softmax a calibrated
probability (docs/design.md §6).

The blend ``a · deep + s · (x B)`` is chosen for ranking. Its item-item part is a least-squares
reconstruction of the profile, roughly a presence chance itself, so the softmax of any multiple
of it is far too peaked at the top: on anime-5k a single temperature gave the top show a
probability of 0.5 where 3% of such shows turned out to be the user's next one. The map

    F(l) = power · log softplus(scale · l − offset)

is linear in ``l`` well below ``offset / scale`` (a temperature, ``power · scale``) and grows like
``power · log l`` above it (probabilities like a power of the linear score), and it is strictly
increasing, so every ranking by presence stays as it is. Its three numbers are fitted on
validation users (`sprout.training.presence_map_fit`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Below this, softplus(x) = e^x to float32 precision and its log is x itself; computing it as
# log(softplus(x)) there would underflow to log(0).
_LINEAR_BELOW = -20.0


def log_softplus(x: jax.Array) -> jax.Array:
    """log(log(1 + e^x)), finite for every finite x (and with finite gradients)."""
    safe = jnp.where(x < _LINEAR_BELOW, 0.0, x)  # keeps the unused branch's gradient finite
    return jnp.where(x < _LINEAR_BELOW, x, jnp.log(jax.nn.softplus(safe)))


def mapped_logits(logits: jax.Array, scale: jax.Array, power: jax.Array, offset: jax.Array) -> jax.Array:
    """F(l) = power · log softplus(scale · l − offset), elementwise: [..., C] -> [..., C]."""
    return power * log_softplus(scale * logits - offset)


def mapped_slope(logits: jax.Array, scale: jax.Array, power: jax.Array, offset: jax.Array) -> jax.Array:
    """F'(l) = power · scale · sigmoid(x) / softplus(x) with x = scale · l − offset, elementwise
    (→ power · scale far below the offset, → power / l far above it)."""
    x = scale * logits - offset
    return power * scale * jnp.exp(jax.nn.log_sigmoid(x) - log_softplus(x))
