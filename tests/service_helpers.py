"""Model stores for the service tests: tiny random-weight models built through the real pipeline
(synthetic population → DuckDB → snapshot → artifact) and registered with `ModelRegistry`."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from flax import nnx

from bentos.registry import ModelRegistry
from sprout.dataset.corpus import Corpus
from sprout.dataset.snapshot import load_snapshot
from sprout.dataset.synthetic import load_population
from sprout.malsim.population import Population
from sprout.model.autoencoder import Autoencoder
from sprout.model.config import ModelConfig
from sprout.presets import get_preset
from sprout.store import Store
from sprout.training.artifact import write_model_artifact
from sprout.training.run import build_dataset

DATASET_HASH = "cd" * 32
# Servers started by the tests share JAX's persistent compilation cache: the tiny models all have
# the same shapes, so only the first start of a session compiles (the rest read the cache).
SERVER_ENV = {
    "JAX_COMPILATION_CACHE_DIR": str(Path(tempfile.gettempdir()) / "sprout-service-tests-jax-cache"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
}


@dataclass(frozen=True)
class ModelStore:
    """A model store folder with registered versions (oldest first) and the corpus they share."""

    store_dir: Path
    versions: list[str]
    corpus: Corpus

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.store_dir)


def build_model_store(home: Path, *, n_models: int = 2, champion: int | None = 0) -> ModelStore:
    """``n_models`` tiny models (different seeds) on one snapshot, registered; ``champion``
    (an index, or None) is promoted."""
    population = Population.synthetic(200, seed=3, n_anime=150)
    with Store.open(home / "sprout.duckdb") as store:
        load_population(store, population, population.now)
    build_dataset(home, home / "sprout.duckdb", get_preset("tiny"), population.now.date())
    snapshot = load_snapshot(next(p for p in (home / "snapshots").iterdir() if p.is_dir()))
    config = ModelConfig.tiny(corpus_size=len(snapshot.corpus.anime_ids))
    registry = ModelRegistry(home / "bentoml" / "models")
    versions = []
    for seed in range(n_models):
        _, folder = write_model_artifact(
            home / "models", Autoencoder(config, nnx.Rngs(seed)), snapshot, {"metrics": {"ndcg@100": 0.0}}
        )
        versions.append(
            registry.register(folder, dataset_hash=DATASET_HASH, wandb_run_id=f"run-{seed}", metrics={"ndcg@100": 0.1 + seed / 100})
        )
    if champion is not None:
        registry.promote(versions[champion], "first champion")
    return ModelStore(registry.store_dir, versions, snapshot.corpus)


def profile_of(corpus: Corpus, n: int, *, start: int = 0) -> list[dict]:
    """``n`` rated, completed entries of corpus shows from index ``start`` on."""
    return [
        {"anime_id": int(anime_id), "score": 1 + (i % 10), "status": "completed"}
        for i, anime_id in enumerate(corpus.anime_ids[start : start + n])
    ]


def served_version(url: str) -> str:
    response = httpx.get(f"{url}/model", timeout=10)
    response.raise_for_status()
    return response.json()["version"]
