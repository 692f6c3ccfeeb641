"""Training batches from a CSR split, built on the host with numpy.

Input dropout happens here, per sample, because the kept entries are then packed flat and the
first layer only touches the shows that occur in the batch: ``[B, U] @ [U, H]`` over the
batch's ``U`` distinct input shows instead of ``[B, 2C] @ [2C, H]``. Targets stay padded ``[B, L]`` (cheap: they only index the
``[B, C]`` outputs). Every array is padded to a bucketed size so jit compiles a handful of
shapes, not one per batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from sprout.dataset.padding import bucket, gather_rows

COLUMN_STEP = 512  # distinct-show counts are padded to a multiple of this (at most): few shapes


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Batch:
    """One step's arrays. Flat inputs: kept entries of all users, padded with segment ``B``."""

    input_columns: np.ndarray  # [U] int32 the distinct corpus items among the inputs (0 in padding)
    input_items: np.ndarray  # [N] int32 index into input_columns (0 in padding)
    input_values: np.ndarray  # [N] float32 normalised rating
    input_users: np.ndarray  # [N] int32 row in the batch; padding points at row B (dropped)
    target_items: np.ndarray  # [B, L] int32
    target_values: np.ndarray  # [B, L] float32
    target_mask: np.ndarray  # [B, L] bool: a real entry
    target_rated: np.ndarray  # [B, L] bool: a real entry with a real score
    target_kept: np.ndarray  # [B, L] bool: a real entry that is also among the inputs (not dropped)

    @property
    def size(self) -> int:
        return self.target_items.shape[0]


def make_batch(
    indptr: np.ndarray,
    items: np.ndarray,
    values: np.ndarray,
    rated: np.ndarray,
    rows: np.ndarray,
    rng: np.random.Generator | None,
    dropout: tuple[float, float] = (0.24, 0.56),
    keep: np.ndarray | None = None,
    corpus_size: int | None = None,
) -> Batch:
    """A batch of ``rows``; with ``rng`` each user drops a U[dropout] share of entries from the
    inputs (one mask for both channels). ``keep`` overrides the inputs explicitly (fold-in)."""
    positions, row_of_entry = gather_rows(indptr, rows)
    size = len(rows)
    lengths = np.bincount(row_of_entry, minlength=size)
    width = bucket(int(lengths.max()) if size else 1, minimum=16)
    column = np.arange(len(positions)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    target_items = np.zeros((size, width), np.int32)
    target_values = np.zeros((size, width), np.float32)
    target_mask = np.zeros((size, width), bool)
    target_rated = np.zeros((size, width), bool)
    target_items[row_of_entry, column] = items[positions]
    target_values[row_of_entry, column] = values[positions]
    target_mask[row_of_entry, column] = True
    target_rated[row_of_entry, column] = rated[positions]
    if keep is not None:
        kept = keep[positions]
    elif rng is not None:
        rate = rng.uniform(dropout[0], dropout[1], size=size)  # [B] one rate per sample
        kept = rng.random(len(positions)) >= rate[row_of_entry]
    else:
        kept = np.ones(len(positions), bool)
    target_kept = np.zeros((size, width), bool)
    target_kept[row_of_entry, column] = kept
    chosen = positions[kept]
    distinct, column_of_entry = np.unique(items[chosen], return_inverse=True)
    step = COLUMN_STEP if corpus_size is None else min(COLUMN_STEP, max(16, corpus_size // 12))
    width = -(-max(len(distinct), 1) // step) * step
    if corpus_size is not None and width > corpus_size // 2:
        # Gathering kernel rows (and scattering their gradient back) costs more than the product
        # it saves once more than about half the corpus occurs: use the whole kernel then.
        distinct, column_of_entry = np.arange(corpus_size), items[chosen]
        width = corpus_size
    input_columns = np.zeros(width, np.int32)
    input_columns[: len(distinct)] = distinct
    n = bucket(len(chosen), minimum=256)
    input_items = np.zeros(n, np.int32)
    input_values = np.zeros(n, np.float32)
    input_users = np.full(n, size, np.int32)
    input_items[: len(chosen)] = column_of_entry
    input_values[: len(chosen)] = values[chosen]
    input_users[: len(chosen)] = row_of_entry[kept]
    return Batch(
        input_columns, input_items, input_values, input_users, target_items, target_values, target_mask, target_rated,
        target_kept,
    )
