"""Build a snapshot and train on it, with everything in its place under ``SPROUT_HOME``.

``snapshots/<id>/`` (immutable), ``checkpoints/<run key>/`` (kept only while a run is unfinished,
so a killed run resumes), ``models/<version>/`` (finished models), ``wandb/`` (offline runs).
``snapshots/LATEST`` names the newest snapshot; it is replaced atomically, and a pointer that names
no intact snapshot (torn by older code, or its folder removed) falls back to the newest intact one.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from datetime import date
from pathlib import Path
from typing import Any

from sprout.dataset.snapshot import build_snapshot, load_snapshot
from sprout.dataset.snapshot_format import MANIFEST_FILE, SnapshotError, SnapshotManifest, read_manifest
from sprout.durable_files import write_text_atomically
from sprout.model.autoencoder import parameter_count
from sprout.training.presets import Preset
from sprout.store import Store
from sprout.model.artifact import write_model_artifact
from sprout.training.loop import Progress, train
from sprout.training.tracking import NullTracker, WandbTracker
from sprout.workspace import Workspace

WANDB_PROJECT = "sprout"

log = logging.getLogger(__name__)


def build_dataset(home: Path, db_path: Path, preset: Preset, snapshot_date: date | None = None) -> SnapshotManifest:
    """Snapshot the store as of ``snapshot_date`` (default: the newest entry's day) and mark it the latest."""
    if not Path(db_path).exists():
        raise FileNotFoundError(f"no database at {db_path}: crawl or import data first")
    workspace = Workspace(home)
    with Store.open(db_path, read_only=True) as store:
        manifest = build_snapshot(store, workspace.snapshots, preset.dataset, snapshot_date)
    write_text_atomically(workspace.latest_snapshot_pointer, manifest.snapshot_id)
    return manifest


def _readable_snapshot(path: Path) -> bool:
    try:
        read_manifest(path)
    except SnapshotError:
        return False
    return True


def _latest_snapshot(workspace: Workspace) -> str:
    """The id ``LATEST`` names; when it names no readable snapshot, the newest readable one."""
    folder, pointer = workspace.snapshots, workspace.latest_snapshot_pointer
    named = pointer.read_text(errors="replace").strip() if pointer.is_file() else ""
    if named and not named.startswith(".") and "/" not in named and _readable_snapshot(folder / named):
        return named
    built = [path for path in folder.iterdir() if not path.name.startswith(".") and _readable_snapshot(path)] \
        if folder.is_dir() else []
    if not built:
        raise FileNotFoundError(f"no snapshot under {folder}: run `sprout dataset build` first")
    newest = max(built, key=lambda path: (path / MANIFEST_FILE).stat().st_mtime)
    if pointer.is_file():
        log.warning("%s names no readable snapshot (%r); using the newest one, %s", pointer, named[:40], newest.name)
    return newest.name


def resolve_snapshot(home: Path, snapshot_id: str | None) -> Path:
    workspace = Workspace(home)
    if snapshot_id is None:
        snapshot_id = _latest_snapshot(workspace)
    path = workspace.snapshot(snapshot_id)
    if not path.is_dir():
        raise FileNotFoundError(f"no snapshot {snapshot_id!r} under {workspace.snapshots}")
    return path


def run_key(snapshot_id: str, preset: Preset) -> str:
    """Same snapshot and settings → same key: a rerun after a kill finds its checkpoint."""
    settings = preset.model_dump_json(exclude={"name": True, "train": {"devices"}})  # any device count resumes
    return f"{snapshot_id}-{preset.name}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"


def train_model(
    home: Path,
    preset: Preset,
    snapshot_id: str | None = None,
    *,
    track: bool = True,
    progress: Progress | None = None,
    devices: int = 1,
) -> dict[str, Any]:
    """Train on a snapshot (default: the latest), save the model artifact, return its summary.
    ``devices``: how many devices each step's batch is split over (`sprout.training.parallel`)."""
    snapshot = load_snapshot(resolve_snapshot(home, snapshot_id))
    preset = preset.sized_for(snapshot.manifest.splits["train"].users)
    preset = preset.model_copy(update={"train": preset.train.model_copy(update={"devices": devices})})
    key = run_key(snapshot.snapshot_id, preset)
    workspace = Workspace(home)
    checkpoint_dir = workspace.checkpoints(key)
    config = {"preset": preset.name, **preset.model_dump(mode="json", exclude={"name"}),
              "snapshot_id": snapshot.snapshot_id, "dataset_counts": snapshot.manifest.model_dump(mode="json")["splits"]}
    tracker = (
        WandbTracker(WANDB_PROJECT, config, workspace.wandb, run_id=key, tags=[preset.name])
        if track else NullTracker()
    )
    try:
        result = train(snapshot, preset.model, preset.train, checkpoint_dir, tracker=tracker, progress=progress)
        summary = {
            "steps": result.steps,
            "stopped_by": result.stopped_by,
            "best_step": result.best_step,
            "item_item": result.item_item,
            "ratings": result.ratings,
            "training_users": result.training_users,
            "entry_threshold": result.entry_threshold,
            "threshold_ndcg": result.threshold_ndcg,
            "refit_users": result.refit_users,
            "validation_by_rating_weight": result.validation_by_rating_weight,
            "resumed_from": result.resumed_from,
            "final": result.final,
            "validation": result.validation,
            "validation_popularity_ndcg@100": result.popularity_ndcg,
            "examples_per_s": result.examples_per_s,
        }
        version, path = write_model_artifact(
            workspace.models, result.model, snapshot,
            {"preset": preset.name, "train_config": preset.train.model_dump(mode="json"),
             "metrics": summary, "wandb_run_id": tracker.run_id},
        )
        tracker.summary({"model_version": version, "validation_popularity_ndcg@100": result.popularity_ndcg,
                         **{f"final/{k}": v for k, v in {**result.final, **result.validation}.items()}})
    finally:
        tracker.finish()
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return {
        "model_version": version,
        "path": str(path),
        "snapshot_id": snapshot.snapshot_id,
        "parameters": parameter_count(result.model),
        "wandb_run_id": tracker.run_id,
        **summary,
    }
