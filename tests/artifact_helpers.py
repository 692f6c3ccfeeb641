"""Untrained tiny model folders on one small simulated snapshot: registry and service tests need
real artifacts, not trained ones."""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from sprout.dataset.snapshot_format import Snapshot, load_snapshot
from sprout.malsim.store_loader import load_population
from sprout.malsim.synthetic_population import synthetic_population
from sprout.model.artifact import write_model_artifact
from sprout.model.autoencoder import Autoencoder
from sprout.model.config import ModelConfig
from sprout.store import Store
from sprout.training.presets import get_preset
from sprout.training.run import build_dataset


def untrained_artifacts(
    home: Path, n_models: int, *, picture_base: str | None = None
) -> tuple[Snapshot, list[Path]]:
    """The snapshot and ``n_models`` artifact folders whose weights differ by seed; with
    ``picture_base`` (a running simulator's URL) the shows' pictures are that simulator's."""
    population = synthetic_population(200, seed=3, n_anime=150)  # the simulator's catalogue in service tests
    with Store.open(home / "sprout.duckdb") as store:
        load_population(store, population, population.now, picture_base=picture_base)
    build_dataset(home, home / "sprout.duckdb", get_preset("tiny"), population.now.date())
    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    config = ModelConfig.tiny(corpus_size=len(snapshot.corpus.anime_ids))
    folders = [
        write_model_artifact(home / "models", Autoencoder(config, nnx.Rngs(seed)), snapshot, {"metrics": {}})[1]
        for seed in range(n_models)
    ]
    return snapshot, folders
