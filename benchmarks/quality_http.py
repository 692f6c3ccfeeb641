"""Recommendation quality over HTTP: users never seen in training, against EASE on the same users.

anime-5k, one seed: the `default` recipe trains on the snapshot's training users (as
`benchmarks/quality.py` does), the model is registered, promoted and served by `sprout serve` on
127.0.0.1, and each test user's fold-in entries go to ``POST /recommend`` with default options
and ``top_k`` 100. The returned lists are scored against the held-out entries with the
evaluator's metrics; EASE (λ tuned on validation users) is scored on the same users in the same
run. anime-5k lists every entry as completed, so that is the status sent.

    uv run python benchmarks/quality_http.py [--data ../shared/data/anime-5k] [--seed 98765]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import typer

from quality import DATA, build_snapshots, default_recipe
from results import write_result
from sprout.evaluation.baselines import EaseEvaluator
from sprout.evaluation.evaluator import ranking_metrics
from sprout.evaluation.held_out import HeldOutUsers, held_out_users
from sprout.model.artifact import write_model_artifact
from sprout.training.loop import train

TOP_K = 100
DATASET_HASH = "a5" * 32


def fold_in_profile(users: HeldOutUsers, row: int, anime_ids: np.ndarray) -> list[dict]:
    split = users.split
    start, end = split.indptr[row], split.indptr[row + 1]
    kept = ~split.heldout[start:end]
    return [
        {"anime_id": int(anime_ids[item]), "score": int(score), "status": "completed"}
        for item, score in zip(split.items[start:end][kept], split.scores[start:end][kept], strict=True)
    ]


def served_scores(url: str, users: HeldOutUsers, anime_ids: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """Rank scores [U, C] from each user's returned list (100 for the first show, -inf if absent)."""
    position = {int(anime_id): index for index, anime_id in enumerate(anime_ids)}
    scores = np.full((users.n_users, users.corpus_size), -np.inf)
    latencies = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for row in range(users.n_users):
            began = time.perf_counter()
            response = http.post("/recommend", json={"profile": fold_in_profile(users, row, anime_ids), "top_k": TOP_K})
            latencies.append(time.perf_counter() - began)
            response.raise_for_status()
            for rank, item in enumerate(response.json()["recommendations"]):
                scores[row, position[item["anime_id"]]] = TOP_K - rank
    return scores, latencies


def main(
    data: Path = typer.Option(DATA, help="Folder of the anime-5k data set."),
    seed: int = typer.Option(98765, help="Split seed."),
) -> None:
    from bentos.local_server import LocalServer
    from bentos.registry import ModelRegistry

    if not (data / "anime_history.dat").is_file():
        raise typer.BadParameter(f"no anime-5k data at {data}")
    with tempfile.TemporaryDirectory(prefix="sprout-quality-http-") as scratch:
        home = Path(scratch)
        snapshot = build_snapshots(data, home / "anime-5k", [seed])[0]
        test, validation = held_out_users(snapshot, "test"), held_out_users(snapshot, "validation")
        ease = EaseEvaluator.tuned(snapshot.split("train"), validation).evaluate(test)
        model_config, train_config = default_recipe(snapshot)
        result = train(snapshot, model_config, train_config, home / "run")
        _, folder = write_model_artifact(home / "models", result.model, snapshot, {"metrics": {}})
        registry = ModelRegistry(home / "bentoml" / "models")
        version = registry.register(folder, dataset_hash=DATASET_HASH, wandb_run_id=None, metrics={})
        registry.promote(version, "benchmark")
        anime_ids = snapshot.corpus.anime_ids
        with LocalServer(registry.store_dir, home / "serve.log", ready_timeout_s=1200) as server:
            scores, latencies = served_scores(server.url, test, anime_ids)
    served = ranking_metrics(scores, test)
    keys = ("recall@20", "recall@50", "ndcg@100")
    figures = {"served": {k: served[k] for k in keys}, "request_p50_ms": float(np.median(latencies) * 1000)}
    baselines = {"ease": {k: ease[k] for k in keys}, "ease_lambda": ease["ease_lambda"]}
    path = write_result("quality_http", {
        "data": "anime-5k", "seed": seed, "users": test.n_users, "top_k": TOP_K, "figures": figures,
        "baselines": baselines, "item_item": result.item_item, "best_step": result.best_step,
    })
    print(f"served {figures['served']}, p50 {figures['request_p50_ms']:.1f} ms; EASE {baselines['ease']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    typer.run(main)
