"""Model stores for the service tests: tiny random-weight models built through the real pipeline
(synthetic population → DuckDB → snapshot → artifact) and registered with `ModelRegistry`."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from artifact_helpers import untrained_artifacts
from bentos.registry import ModelRegistry
from sprout.dataset.corpus import Corpus

DATASET_HASH = "cd" * 32
# Servers started by the tests share JAX's persistent compilation cache: the tiny models all have
# the same shapes, so only the first start of a session compiles (the rest read the cache).
SERVER_ENV = {
    "JAX_COMPILATION_CACHE_DIR": str(Path(tempfile.gettempdir()) / "sprout-service-tests-jax-cache"),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "SPROUT_SERVE_ACCESS_LOG": "true",  # some tests read every request's status from the access log
}
SIMULATOR_SEED, SIMULATOR_SHOWS = 3, 150  # the population `untrained_artifacts` builds its snapshot from


def simulator_env(simulator) -> dict[str, str]:
    """Point a server's MAL client at a running simulator (fast retries, no rate limit to wait on)."""
    return {
        "SPROUT_MAL_API_URL": simulator.api_url, "SPROUT_MAL_WEB_URL": simulator.url,
        "SPROUT_MAL_CLIENT_ID": "test-client-id", "SPROUT_MAL_REQUESTS_PER_SECOND": "1000",
        "SPROUT_MAL_MAX_ATTEMPTS": "2", "SPROUT_MAL_BACKOFF_BASE_S": "0.01", "SPROUT_MAL_BACKOFF_MAX_S": "0.05",
    }


@dataclass(frozen=True)
class ModelStore:
    """A model store folder with registered versions (oldest first) and the corpus they share."""

    store_dir: Path
    versions: list[str]
    corpus: Corpus

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.store_dir)


def build_model_store(
    home: Path, *, n_models: int = 2, champion: int | None = 0, picture_base: str | None = None
) -> ModelStore:
    """``n_models`` tiny models (different seeds) on one snapshot, registered; ``champion``
    (an index, or None) is promoted; ``picture_base``: see `untrained_artifacts`."""
    snapshot, folders = untrained_artifacts(home, n_models, picture_base=picture_base)
    registry = ModelRegistry(home / "bentoml" / "models")
    versions = []
    for seed, folder in enumerate(folders):
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
