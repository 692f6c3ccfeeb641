"""The trained model as a versioned artifact in a safe format: arrays (``.npz``) and JSON.

``models/<version>/`` holds ``weights.npz`` (no pickle; config inside), ``corpus.json`` (the
shows the model knows, index order) and ``model.json`` (configs, dataset identity, the feature
constants serving must apply, metrics, W&B run). The folder is written elsewhere and renamed
into place, so a reader never sees half a model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sprout.dataset import features
from sprout.dataset.snapshot_format import Snapshot
from sprout.model.autoencoder import Autoencoder, parameter_count
from sprout.model.weights import load_weights, save_weights

ARTIFACT_FORMAT = 1
WEIGHTS_FILE = "weights.npz"
CORPUS_FILE = "corpus.json"
METADATA_FILE = "model.json"

FEATURE_CONSTANTS = {
    "no_scores_mu": features.NO_SCORES_MU,
    "no_scores_sigma": features.NO_SCORES_SIGMA,
    "sigma_floor": features.SIGMA_FLOOR,
    "dropped_fill_sigmas": features.DROPPED_FILL_SIGMAS,
}


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def write_model_artifact(
    models_dir: Path, model: Autoencoder, snapshot: Snapshot, metadata: dict[str, Any]
) -> tuple[str, Path]:
    """Save ``model`` as a new version; returns (version, folder)."""
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=models_dir))
    try:
        save_weights(model, staging / WEIGHTS_FILE)
        shutil.copyfile(snapshot.path / "corpus.json", staging / CORPUS_FILE)
        weights_sha = _sha256(staging / WEIGHTS_FILE)
        created = datetime.now(timezone.utc)
        version = f"{created:%Y%m%d-%H%M%S}-{weights_sha[:8]}"
        manifest = snapshot.manifest
        document = {
            "format_version": ARTIFACT_FORMAT,
            "version": version,
            "created_at": created.isoformat(),
            "parameters": parameter_count(model),
            "model_config": model.config.model_dump(mode="json"),
            "dataset": {
                "snapshot_id": manifest.snapshot_id,
                "content_sha256": manifest.content_sha256,
                "snapshot_date": manifest.snapshot_date,
                "config": manifest.config.model_dump(mode="json"),
            },
            "features": FEATURE_CONSTANTS,
            "files": {WEIGHTS_FILE: weights_sha, CORPUS_FILE: _sha256(staging / CORPUS_FILE)},
            **metadata,
        }
        (staging / METADATA_FILE).write_text(json.dumps(document, indent=2, sort_keys=True, default=float))
        target = models_dir / version
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version, target


def read_model_artifact(folder: Path) -> tuple[Autoencoder, dict[str, Any]]:
    """Load a saved model and its metadata, checking the files' hashes."""
    folder = Path(folder)
    document = json.loads((folder / METADATA_FILE).read_text())
    for name, expected in document["files"].items():
        if _sha256(folder / name) != expected:
            raise ValueError(f"{folder / name} does not match its recorded hash")
    return load_weights(folder / WEIGHTS_FILE), document
