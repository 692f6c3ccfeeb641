"""The retrain flow under the Prefect test server: snapshot → train → artifacts."""

from __future__ import annotations

import asyncio

from sprout.malsim.store_loader import load_population
from sprout.malsim.synthetic_population import synthetic_population
from sprout.store import Store


def test_retrain_flow_builds_trains_and_publishes(prefect_server, tmp_path, monkeypatch):
    from prefect import get_client

    from flows.retrain import RetrainParameters, retrain_flow

    monkeypatch.setenv("SPROUT_HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "offline")
    population = synthetic_population(400, seed=8, n_anime=300)
    with Store.open(tmp_path / "sprout.duckdb") as store:
        load_population(store, population, population.now)
    summary = retrain_flow(RetrainParameters(config="tiny", snapshot_date=population.now.date()))
    assert (tmp_path / "models" / summary["model_version"] / "weights.npz").is_file()
    assert summary["validation"]["val/ndcg@100"] > summary["validation_popularity_ndcg@100"]

    async def artifact_keys():
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts(limit=50)}

    assert {"dataset-manifest", "training-summary", "training-run"} <= asyncio.run(artifact_keys())
