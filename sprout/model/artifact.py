"""The trained model as a versioned artifact in a safe format: arrays (``.npz``) and JSON.

``models/<version>/`` holds ``weights.npz`` (no pickle; config inside), ``corpus.json`` (the
shows the model knows, index order) and ``model.json`` (configs, dataset identity, the feature
constants serving must apply, metrics, W&B run). The folder is written elsewhere and renamed
into place, so a reader never sees half a model.
"""

from __future__ import annotations

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
from sprout.durable_files import file_sha256
from sprout.workspace import MODEL_DOCUMENT

ARTIFACT_FORMAT = 1
WEIGHTS_FILE = "weights.npz"
CORPUS_FILE = "corpus.json"
METADATA_FILE = MODEL_DOCUMENT
ALLOWED_SUFFIXES = (".npz", ".json")  # arrays and JSON: nothing that runs code when it is read

FEATURE_CONSTANTS = {
    "no_scores_mu": features.NO_SCORES_MU,
    "no_scores_sigma": features.NO_SCORES_SIGMA,
    "sigma_floor": features.SIGMA_FLOOR,
    "dropped_fill_sigmas": features.DROPPED_FILL_SIGMAS,
}



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
        weights_sha = file_sha256(staging / WEIGHTS_FILE)
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
            "files": {WEIGHTS_FILE: weights_sha, CORPUS_FILE: file_sha256(staging / CORPUS_FILE)},
            **metadata,
        }
        (staging / METADATA_FILE).write_text(json.dumps(document, indent=2, sort_keys=True, default=float))
        target = models_dir / version
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return version, target


class ArtifactError(ValueError):
    """A model folder that is incomplete, fails its hash check, or holds a disallowed file."""


def verified_files(folder: Path) -> tuple[dict[str, Any], list[Path]]:
    """The artifact's description and its files (``model.json`` first), after checking that each
    recorded file is an allowed kind and matches its recorded hash."""
    folder = Path(folder)
    metadata_file = folder / METADATA_FILE
    if not metadata_file.is_file():
        raise ArtifactError(f"{folder} has no {METADATA_FILE}; is it a model folder?")
    try:
        document = json.loads(metadata_file.read_text(encoding="utf-8"))
        recorded = dict(document.get("files", {}))
    except (ValueError, TypeError, AttributeError) as error:
        raise ArtifactError(f"{metadata_file} is not a model description: {error}") from None
    for name in recorded:
        if Path(name).name != name or Path(name).suffix not in ALLOWED_SUFFIXES:
            raise ArtifactError(f"{folder}: {name!r} is not an allowed model file ({', '.join(ALLOWED_SUFFIXES)})")
    files = [metadata_file]
    for name, expected in recorded.items():
        path = folder / name
        if not path.is_file() or file_sha256(path) != expected:
            raise ArtifactError(f"{path} is missing or does not match its recorded hash")
        files.append(path)
    if len(files) == 1:
        raise ArtifactError(f"{metadata_file} lists no files")
    return document, files


def read_model_artifact(folder: Path) -> tuple[Autoencoder, dict[str, Any]]:
    """Load a saved model and its metadata, checking the files (see `verified_files`)."""
    document, _ = verified_files(folder)
    return load_weights(Path(folder) / WEIGHTS_FILE), document
