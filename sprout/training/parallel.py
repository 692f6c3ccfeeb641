"""Data-parallel training over a `jax.sharding` mesh: the batch axis split over the devices, the
weights and optimiser state replicated on each.

XLA partitions the jitted step from its inputs' shardings and inserts the gradient all-reduce, so
the step itself is unchanged: one device and many compute the same losses up to the order of
float sums. Checkpoints hold host arrays, so they resume on any number of devices. On several
hosts (the ROCm pool), `jax.distributed.initialize()` runs first in each process and
``jax.devices()`` then lists every host's devices (see infra/operations.md).
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sprout.training.batches import Batch

BATCH_AXIS = "batch"
PER_EXAMPLE = ("target_items", "target_values", "target_mask", "target_rated", "target_kept")  # [B, L]: split by row


def data_mesh(devices: int, batch_size: int) -> Mesh | None:
    """A 1-D mesh over the first ``devices`` devices; None for one device (no sharding at all)."""
    available = len(jax.devices())
    if not 1 <= devices <= available:
        raise ValueError(
            f"asked to train on {devices} devices; JAX sees {available} (on CPU, more devices come from "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N set before JAX starts)"
        )
    if batch_size % devices:
        raise ValueError(f"batch_size {batch_size} does not split evenly over {devices} devices")
    return None if devices == 1 else Mesh(np.array(jax.devices()[:devices]), (BATCH_AXIS,))


def replicated(tree: Any, mesh: Mesh | None) -> Any:
    """``tree`` with every array on every device of ``mesh`` (unchanged without a mesh)."""
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def sharded_batch(batch: Batch, mesh: Mesh | None) -> Batch:
    """The per-example arrays split by row over ``mesh``; the flat input arrays, which index every
    row of the batch, replicated."""
    if mesh is None:
        return batch
    by_row, whole = NamedSharding(mesh, PartitionSpec(BATCH_AXIS)), NamedSharding(mesh, PartitionSpec())
    return replace(batch, **{
        field.name: jax.device_put(getattr(batch, field.name), by_row if field.name in PER_EXAMPLE else whole)
        for field in fields(batch)
    })
