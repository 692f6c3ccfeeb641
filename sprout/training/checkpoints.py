"""Checkpoints in a safe format: plain arrays in ``.npz`` plus JSON, written so that a kill or a
power loss at any instant leaves something to resume from.

A pytree (model state, optimiser state) is stored as its leaves in order; loading needs a tree of
the same structure to pour them into (a freshly initialised model and optimiser), so nothing is
ever unpickled.

A save writes a staging folder, fsyncs its files and the folder, then renames ``latest`` to
``latest.previous`` and the staging folder to ``latest``. Every instant of that leaves a readable
checkpoint behind: a kill between the two renames leaves only ``latest.previous``, which resuming
falls back to, as it does when ``latest`` is damaged (a torn file from before fsync, a bad disk).
A checkpoint that cannot be read is skipped with a warning, never a crash: the worst case is
training from step 0. Staging folders a killed save left behind are removed.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sprout.durable_files import file_sha256, fsync_file, fsync_folder

LEAVES_FILE = "leaves.npz"
META_FILE = "meta.json"
PREVIOUS_SUFFIX = ".previous"
STAGING_INFIX = ".staging-"

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, damaged or does not fit the tree it is loaded into."""


def _staging_prefix(folder: Path) -> str:
    return f".{folder.name}{STAGING_INFIX}"


def remove_stale_staging(folder: Path) -> list[Path]:
    """Delete staging folders of saves into ``folder`` that never finished; returns them.

    Only one process trains one run (the run key names the folder), so no save is in flight here.
    """
    folder = Path(folder)
    stale = sorted(folder.parent.glob(_staging_prefix(folder) + "*")) if folder.parent.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale



def save_pytree(folder: Path, trees: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write ``trees`` (name → pytree) and ``meta`` into ``folder``, keeping the checkpoint it
    replaces as ``folder.previous``."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    shapes: dict[str, int] = {}
    for name, tree in trees.items():
        leaves = jax.tree_util.tree_leaves(tree)
        shapes[name] = len(leaves)
        for i, leaf in enumerate(leaves):
            arrays[f"{name}/{i}"] = np.asarray(jax.device_get(leaf))
    remove_stale_staging(folder)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(folder), dir=folder.parent))
    try:
        np.savez(staging / LEAVES_FILE, **arrays)
        fsync_file(staging / LEAVES_FILE)
        header = {"meta": meta, "leaves": shapes, "leaves_sha256": file_sha256(staging / LEAVES_FILE)}
        (staging / META_FILE).write_text(json.dumps(header, sort_keys=True))
        fsync_file(staging / META_FILE)
        fsync_folder(staging)
        previous = folder.with_name(folder.name + PREVIOUS_SUFFIX)
        if folder.exists():
            shutil.rmtree(previous, ignore_errors=True)
            folder.rename(previous)
        staging.rename(folder)
        fsync_folder(folder.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_pytree(folder: Path, like: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Leaves from ``folder`` poured into trees shaped like ``like``; returns (trees, meta).

    Any failure (missing or torn files, a hash mismatch, a different structure) is a
    `CheckpointError`."""
    folder = Path(folder)
    try:
        return _load_pytree(folder, like)
    except CheckpointError:
        raise
    except Exception as error:  # a torn zip raises BadZipFile, EOFError, zlib.error, KeyError...
        raise CheckpointError(f"cannot read checkpoint {folder}: {type(error).__name__}: {error}") from error


def _load_pytree(folder: Path, like: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    header = json.loads((folder / META_FILE).read_text())
    expected_sha256 = header.get("leaves_sha256")  # absent in checkpoints written before it existed
    if expected_sha256 is not None and file_sha256(folder / LEAVES_FILE) != expected_sha256:
        raise CheckpointError(f"checkpoint {folder}: {LEAVES_FILE} differs from the hash in {META_FILE}")
    trees: dict[str, Any] = {}
    with np.load(folder / LEAVES_FILE, allow_pickle=False) as stored:
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
    """The checkpoints of one training run: ``folder/latest`` and, as a fallback, ``folder/latest.previous``."""

    folder: Path

    @property
    def latest(self) -> Path:
        return Path(self.folder) / "latest"

    @property
    def previous(self) -> Path:
        return Path(self.folder) / ("latest" + PREVIOUS_SUFFIX)

    def candidates(self) -> list[Path]:
        """Stored checkpoints, newest first."""
        return [path for path in (self.latest, self.previous) if (path / META_FILE).is_file()]

    def exists(self) -> bool:
        return bool(self.candidates())

    def save(self, trees: dict[str, Any], meta: dict[str, Any]) -> None:
        save_pytree(self.latest, trees, meta)

    def load(self, like: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """The newest readable checkpoint; `CheckpointError` (naming every failure) when none is."""
        failures = []
        for path in self.candidates():
            try:
                return load_pytree(path, like)
            except CheckpointError as error:
                failures.append(str(error))
        raise CheckpointError("; ".join(failures) or f"no checkpoint under {self.folder}")

    def resume(self, like: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """What a restarted run continues from: the newest readable checkpoint, or None (start
        over) when there is none. Unreadable ones are skipped with a warning; leftovers of an
        unfinished save are removed."""
        for stale in remove_stale_staging(self.latest):
            log.warning("removed %s, left by a save that did not finish", stale)
        for path in self.candidates():
            try:
                return load_pytree(path, like)
            except CheckpointError as error:
                log.warning("skipping an unreadable checkpoint: %s", error)
        return None
