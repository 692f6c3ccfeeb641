"""The encoder's first layer on sparse profiles.

A profile has a handful of entries out of ``corpus_size`` shows, so ``x @ kernel`` with the
dense ``[2C]`` input (``x[i] = 1``, ``x[C + i] = rating_i``) is a sum of two kernel rows per
entry. Gathering those rows costs ``O(L * H)`` instead of ``O(C * H)`` and, because the sum is
linear, holding one entry out is a rank-1 change of the pre-activation (used by explanations).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def entry_weights(items: jax.Array, values: jax.Array, mask: jax.Array, corpus_size: int) -> tuple[jax.Array, jax.Array]:
    """Row indices and weights of the two input channels of every entry.

    items [B, L] int, values [B, L] float, mask [B, L] bool
    -> rows [B, 2L] int (presence rows, then rating rows), weights [B, 2L] float.
    Padding gets weight 0 whatever its item or value holds (even NaN).
    """
    present = mask.astype(values.dtype)  # [B, L]
    rating = jnp.where(mask, values, 0.0)  # [B, L]
    rows = jnp.concatenate([items, items + corpus_size], axis=-1)  # [B, 2L]
    weights = jnp.concatenate([present, rating], axis=-1)  # [B, 2L]
    return rows, weights


def entry_rows(kernel: jax.Array, items: jax.Array, values: jax.Array, mask: jax.Array) -> jax.Array:
    """Each entry's own contribution to the first layer's pre-activation.

    kernel [2C, H], items/values/mask [B, L] -> [B, L, H]; zero for padding.
    Subtracting ``entry_rows[:, j]`` from the pre-activation holds entry ``j`` out.
    """
    corpus_size = kernel.shape[0] // 2
    present = mask.astype(kernel.dtype)[..., None]  # [B, L, 1]
    rating = jnp.where(mask, values, 0.0).astype(kernel.dtype)[..., None]  # [B, L, 1]
    return present * kernel[items] + rating * kernel[items + corpus_size]  # [B, L, H]


def first_layer_sparse(
    kernel: jax.Array, bias: jax.Array, items: jax.Array, values: jax.Array, mask: jax.Array
) -> jax.Array:
    """``bias + Σ_j mask_j * (kernel[items_j] + values_j * kernel[C + items_j])``.

    kernel [2C, H], bias [H], items/values/mask [B, L] -> pre-activation [B, H].
    Entries are added one column of the batch at a time: gathering all ``[B, 2L, H]`` rows at
    once costs gigabytes at batch 512 and measured several times slower on CPU.
    The sum is kept in float32 so that bfloat16 weights lose no precision over long profiles.
    """
    corpus_size = kernel.shape[0] // 2
    rows, weights = entry_weights(items, values, mask, corpus_size)  # [B, 2L]

    def add_entry(total: jax.Array, entry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, None]:
        row_ids, row_weights = entry  # [B], [B]
        return total + row_weights.astype(jnp.float32)[:, None] * kernel[row_ids], None

    start = jnp.broadcast_to(bias.astype(jnp.float32), (items.shape[0], kernel.shape[1]))  # [B, H]
    total, _ = jax.lax.scan(add_entry, start, (rows.T, weights.T))
    return total.astype(kernel.dtype)


def dense_profile(items: jax.Array, values: jax.Array, mask: jax.Array, corpus_size: int) -> jax.Array:
    """The dense input the sparse layer stands for.

    items/values/mask [B, L] -> x [B, 2C] with ``x[i] = 1`` and ``x[C + i] = value`` for each entry.
    """
    rows, weights = entry_weights(items, values, mask, corpus_size)  # [B, 2L]
    batch = jnp.arange(items.shape[0])[:, None]  # [B, 1]
    dense = jnp.zeros((items.shape[0], 2 * corpus_size), weights.dtype)  # [B, 2C]
    return dense.at[batch, rows].add(weights)


def first_layer_dense(kernel: jax.Array, bias: jax.Array, x: jax.Array) -> jax.Array:
    """Reference dense first layer: x [B, 2C] @ kernel [2C, H] + bias [H] -> [B, H]."""
    return x.astype(kernel.dtype) @ kernel + bias
