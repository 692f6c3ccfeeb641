"""Checkpoints in a safe format: plain arrays in ``.npz`` plus JSON, written atomically.

A pytree (model state, optimiser state) is stored as its leaves in order; loading needs a tree of
the same structure to pour them into (a freshly initialised model and optimiser), so nothing is
ever unpickled. A run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

LEAVES_FILE = "leaves.npz"
META_FILE = "meta.json"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged or does not fit the tree it is loaded into."""


def save_pytree(folder: Path, trees: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``trees`` (name → pytree) and ``meta`` into ``folder``, replacing it atomically."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    shapes: dict[str, int] = {}
    for name, tree in trees.items():
        leaves = jax.tree_util.tree_leaves(tree)
        shapes[name] = len(leaves)
        for i, leaf in enumerate(leaves):
            arrays[f"{name}/{i}"] = np.asarray(jax.device_get(leaf))
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        np.savez(staging / LEAVES_FILE, **arrays)
        (staging / META_FILE).write_text(json.dumps({"meta": meta, "leaves": shapes}, sort_keys=True))
        with open(staging / META_FILE, "rb") as handle:
            os.fsync(handle.fileno())
        previous = folder.with_name(folder.name + ".previous")
        if folder.exists():
            shutil.rmtree(previous, ignore_errors=True)
            folder.rename(previous)
        staging.rename(folder)
        shutil.rmtree(previous, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_pytree(folder: Path, like: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Leaves from ``folder`` poured into trees shaped like ``like``; returns (trees, meta)."""
    folder = Path(folder)
    try:
        header = json.loads((folder / META_FILE).read_text())
        stored = np.load(folder / LEAVES_FILE, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read checkpoint {folder}: {error}") from error
    trees: dict[str, Any] = {}
    with stored:
        for name, template in like.items():
            leaves, treedef = jax.tree_util.tree_flatten(template)
            if header["leaves"].get(name) != len(leaves):
                raise CheckpointError(f"checkpoint {folder}: '{name}' has a different structure")
            loaded = []
            for i, leaf in enumerate(leaves):
                array = stored[f"{name}/{i}"]
                if array.shape != np.shape(leaf):
                    raise CheckpointError(
                        f"checkpoint {folder}: '{name}' leaf {i} has shape {array.shape}, expected {np.shape(leaf)}"
                    )
                loaded.append(jax.numpy.asarray(array, dtype=getattr(leaf, "dtype", array.dtype)))
            trees[name] = jax.tree_util.tree_unflatten(treedef, loaded)
    return trees, header["meta"]


@dataclass(frozen=True)
class Checkpoints:
    """The latest checkpoint of one training run, in ``folder/latest``."""

    folder: Path

    @property
    def latest(self) -> Path:
        return Path(self.folder) / "latest"

    def exists(self) -> bool:
        return (self.latest / META_FILE).is_file()

    def save(self, trees: dict[str, Any], meta: dict[str, Any]) -> None:
        save_pytree(self.latest, trees, meta)

    def load(self, like: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return load_pytree(self.latest, like)
