"""Per-sample input dropout: the denoising corruption of training profiles.

Each user gets its own rate from ``U[min_rate, max_rate]`` (0.4 ± 0.16 by default), so the model
sees both nearly whole and heavily thinned profiles. Dropping works per entry: one keep-mask hides
the presence flag and the rating together. Targets stay the uncorrupted profile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def input_dropout(key: jax.Array, mask: jax.Array, min_rate: float = 0.24, max_rate: float = 0.56) -> jax.Array:
    """Which entries the corrupted input keeps.

    key: PRNG key; mask [B, L] bool (real entries) -> keep [B, L] bool, always False on padding.
    Feed ``keep`` as the input mask; both channels of an entry go together.
    """
    if not 0.0 <= min_rate <= max_rate <= 1.0:
        raise ValueError(f"need 0 <= min_rate <= max_rate <= 1, got {min_rate}, {max_rate}")
    rate_key, drop_key = jax.random.split(key)
    rates = jax.random.uniform(rate_key, (mask.shape[0], 1), minval=min_rate, maxval=max_rate)  # [B, 1]
    draws = jax.random.uniform(drop_key, mask.shape)  # [B, L]
    return mask & (draws >= rates)
