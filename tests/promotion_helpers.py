"""A platform home for promotion tests: a simulated store, a snapshot, trained tiny models and a
random-weight one, all on the same snapshot."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from flax import nnx

from sprout.dataset.snapshot_format import load_snapshot
from sprout.malsim.store_loader import load_population
from sprout.malsim.synthetic_population import synthetic_population
from sprout.model.autoencoder import Autoencoder
from sprout.training.presets import Preset, get_preset
from sprout.store import Store
from sprout.model.artifact import write_model_artifact
from sprout.training.config import TrainConfig
from sprout.training.run import build_dataset, resolve_snapshot, train_model


@dataclass(frozen=True)
class TrainedHome:
    home: Path
    trained: tuple[str, str]  # two trained versions (different seeds)
    random: str  # untrained weights: must never pass the gate


def make_trained_home(folder: Path) -> TrainedHome:
    tiny = get_preset("tiny")
    population = synthetic_population(500, seed=11, n_anime=300)
    with Store.open(folder / "sprout.duckdb") as store:
        load_population(store, population, population.now)
    build_dataset(folder, folder / "sprout.duckdb", tiny, population.now.date())
    versions = []
    for seed in (0, 1):
        preset = Preset(name="tiny", dataset=tiny.dataset, model=tiny.model,
                        train=TrainConfig.tiny().model_copy(update={"seed": seed}))
        versions.append(train_model(folder, preset, track=True)["model_version"])
    snapshot = load_snapshot(resolve_snapshot(folder, None))
    version, _ = write_model_artifact(folder / "models", Autoencoder(tiny.model, nnx.Rngs(7)), snapshot, {"preset": "tiny"})
    return TrainedHome(folder, (versions[0], versions[1]), version)


def private_home(source: TrainedHome, folder: Path, monkeypatch) -> TrainedHome:
    """A private copy of ``source`` under ``folder``, with the environment pointing at it and at
    an empty model store (tests that promote must not share a registry or history)."""
    target = folder / "home"
    shutil.copytree(source.home, target, dirs_exist_ok=True)
    monkeypatch.setenv("SPROUT_HOME", str(target))
    monkeypatch.setenv("SPROUT_MODEL_STORE", str(folder / "model-store"))
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")
    monkeypatch.setenv("WANDB_MODE", "offline")
    return TrainedHome(target, source.trained, source.random)
