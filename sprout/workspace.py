"""Every path under ``SPROUT_HOME``, named in one place.

    sprout.duckdb            the store (one writer at a time)
    snapshots/<id>/          immutable dataset snapshots; snapshots/LATEST names the newest
    checkpoints/<run key>/   an unfinished training run's checkpoints (resumed after a kill)
    models/<version>/        finished model artifacts (versions sort by creation time)
    wandb/                   W&B runs (offline without a key)
    model-store/             the BentoML model store when the platform keeps its own (the main job)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MODEL_DOCUMENT = "model.json"  # a model artifact's description; a folder with one is a finished model


@dataclass(frozen=True)
class Workspace:
    home: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home))

    @property
    def database(self) -> Path:
        return self.home / "sprout.duckdb"

    @property
    def snapshots(self) -> Path:
        return self.home / "snapshots"

    @property
    def latest_snapshot_pointer(self) -> Path:
        return self.snapshots / "LATEST"

    def snapshot(self, snapshot_id: str) -> Path:
        return self.snapshots / snapshot_id

    @property
    def models(self) -> Path:
        return self.home / "models"

    def model(self, version: str) -> Path:
        return self.models / version

    def trained_versions(self) -> list[str]:
        """Versions of the finished models, oldest first."""
        folder = self.models
        return sorted(p.name for p in folder.iterdir() if (p / MODEL_DOCUMENT).is_file()) if folder.is_dir() else []

    def newest_model(self) -> str | None:
        versions = self.trained_versions()
        return versions[-1] if versions else None

    def checkpoints(self, run_key: str) -> Path:
        return self.home / "checkpoints" / run_key

    @property
    def wandb(self) -> Path:
        return self.home / "wandb"

    @property
    def model_store(self) -> Path:
        return self.home / "model-store"
