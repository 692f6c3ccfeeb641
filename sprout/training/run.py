"""Build a snapshot and train on it, with everything in its place under ``SPROUT_HOME``.

``snapshots/<id>/`` (immutable), ``checkpoints/<run key>/`` (kept only while a run is unfinished,
so a killed run resumes), ``models/<version>/`` (finished models), ``wandb/`` (offline runs).
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from sprout.dataset.snapshot import build_snapshot, load_snapshot
from sprout.dataset.snapshot_format import SnapshotManifest
from sprout.model.autoencoder import parameter_count
from sprout.presets import Preset
from sprout.store import Store
from sprout.training.artifact import write_model_artifact
from sprout.training.loop import Progress, train
from sprout.training.tracking import NullTracker, WandbTracker

LATEST_SNAPSHOT = "LATEST"
WANDB_PROJECT = "sprout"


def snapshots_dir(home: Path) -> Path:
    return Path(home) / "snapshots"


def build_dataset(home: Path, db_path: Path, preset: Preset, snapshot_date: date | None = None) -> SnapshotManifest:
    """Snapshot the store as of ``snapshot_date`` (default: today, UTC) and mark it the latest."""
    snapshot_date = snapshot_date or datetime.now(timezone.utc).date()
    if not Path(db_path).exists():
        raise FileNotFoundError(f"no database at {db_path}: crawl or import data first")
    with Store.open(db_path, read_only=True) as store:
        manifest = build_snapshot(store, snapshots_dir(home), preset.dataset, snapshot_date)
    (snapshots_dir(home) / LATEST_SNAPSHOT).write_text(manifest.snapshot_id)
    return manifest


def resolve_snapshot(home: Path, snapshot_id: str | None) -> Path:
    folder = snapshots_dir(home)
    if snapshot_id is None:
        pointer = folder / LATEST_SNAPSHOT
        if not pointer.is_file():
            raise FileNotFoundError(f"no snapshot under {folder}: run `sprout dataset build` first")
        snapshot_id = pointer.read_text().strip()
    path = folder / snapshot_id
    if not path.is_dir():
        raise FileNotFoundError(f"no snapshot {snapshot_id!r} under {folder}")
    return path


def run_key(snapshot_id: str, preset: Preset) -> str:
    """Same snapshot and settings → same key: a rerun after a kill finds its checkpoint."""
    settings = preset.model_dump_json(exclude={"name"})
    return f"{snapshot_id}-{preset.name}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"


def train_model(
    home: Path,
    preset: Preset,
    snapshot_id: str | None = None,
    *,
    track: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train on a snapshot (default: the latest), save the model artifact, return its summary."""
    snapshot = load_snapshot(resolve_snapshot(home, snapshot_id))
    preset = preset.sized_for(snapshot.manifest.splits["train"].users)
    key = run_key(snapshot.snapshot_id, preset)
    checkpoint_dir = Path(home) / "checkpoints" / key
    config = {"preset": preset.name, **preset.model_dump(mode="json", exclude={"name"}),
              "snapshot_id": snapshot.snapshot_id, "dataset_counts": snapshot.manifest.model_dump(mode="json")["splits"]}
    tracker = (
        WandbTracker(WANDB_PROJECT, config, Path(home) / "wandb", run_id=key, tags=[preset.name])
        if track else NullTracker()
    )
    try:
        result = train(snapshot, preset.model, preset.train, checkpoint_dir, tracker=tracker, progress=progress)
        summary = {
            "steps": result.steps,
            "stopped_by": result.stopped_by,
            "best_step": result.best_step,
            "item_item": result.item_item,
            "resumed_from": result.resumed_from,
            "final": result.final,
            "validation": result.validation,
            "validation_popularity_ndcg@100": result.popularity_ndcg,
            "examples_per_s": result.examples_per_s,
        }
        version, path = write_model_artifact(
            Path(home) / "models", result.model, snapshot,
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
