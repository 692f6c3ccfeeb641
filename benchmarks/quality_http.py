"""Recommendation quality over HTTP: users never seen in training, against EASE on the same users.

anime-5k, one seed: the `default` recipe trains on the snapshot's training users (as
`benchmarks/quality.py` does), the model is registered, promoted and served by `sprout serve` on
127.0.0.1, and each test user's fold-in entries go to ``POST /recommend`` with default options
and ``top_k`` 100. The returned lists are scored against the held-out entries with the
evaluator's metrics, and their probabilities against what happened: a user's next show is one of
their held-out entries, each as likely, so the 100 returned are expected to hold it with chance
``Σ p`` and held it ``hits / n_held`` of the time (`sprout.evaluation.calibration`); each user's held-out rated
shows go to ``POST /predict`` and its predicted ratings are scored by MAE. EASE (λ tuned on
validation users), the user + item bias baseline and item-kNN with baselines are fitted on the
same users as the served model (training + validation) and scored on the same test users in the
same run. anime-5k lists every entry as completed, so that is the status sent.

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
from sprout.evaluation.baselines import standard_baselines
from sprout.evaluation.evaluator import ranking_metrics, rating_metrics
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


def served_answers(url: str, users: HeldOutUsers, anime_ids: np.ndarray) -> dict:
    """Rank scores [U, C] from each user's returned list (100 for the first show, -inf if absent),
    the expected and actual next shows in the returned lists, /predict's rating of every
    held-out rated entry [m], and request latencies."""
    position = {int(anime_id): index for index, anime_id in enumerate(anime_ids)}
    scores = np.full((users.n_users, users.corpus_size), -np.inf)
    predicted = np.full(len(users.rated_items), np.nan)
    expected = actual = 0.0
    latencies = []
    with httpx.Client(base_url=url, timeout=120) as http:
        for row in range(users.n_users):
            profile = fold_in_profile(users, row, anime_ids)
            began = time.perf_counter()
            response = http.post("/recommend", json={"profile": profile, "top_k": TOP_K})
            latencies.append(time.perf_counter() - began)
            response.raise_for_status()
            recommendations = response.json()["recommendations"]
            for rank, item in enumerate(recommendations):
                scores[row, position[item["anime_id"]]] = TOP_K - rank
            n_held = int(users.held_out[row].sum())
            if n_held:
                expected += sum(item["probability"] for item in recommendations)
                actual += sum(bool(users.held_out[row, position[item["anime_id"]]]) for item in recommendations) / n_held
            entries = np.flatnonzero(users.rated_users == row)
            if len(entries):
                shows = [int(anime_ids[users.rated_items[e]]) for e in entries]
                answer = http.post("/predict", json={"profile": profile, "shows": shows})
                answer.raise_for_status()
                by_id = {p["anime_id"]: p["predicted_rating"] for p in answer.json()["predictions"]}
                predicted[entries] = [by_id[show] for show in shows]
    return {"scores": scores, "predicted": predicted, "expected_next": expected, "actual_next": actual,
            "latencies": latencies}


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
        training = snapshot.split("train")
        everyone = training.joined(snapshot.split("validation"))  # what the served model learns from
        baselines = {e.name: e.evaluate(test) for e in standard_baselines(training, validation, fit_on=everyone)}
        model_config, train_config = default_recipe(snapshot)
        result = train(snapshot, model_config, train_config, home / "run")
        _, folder = write_model_artifact(home / "models", result.model, snapshot,
                                         {"metrics": {"refit_users": result.refit_users}})
        registry = ModelRegistry(home / "bentoml" / "models")
        version = registry.register(folder, dataset_hash=DATASET_HASH, wandb_run_id=None, metrics={})
        registry.promote(version, "benchmark")
        anime_ids = snapshot.corpus.anime_ids
        with LocalServer(registry.store_dir, home / "serve.log", ready_timeout_s=1200) as server:
            answers = served_answers(server.url, test, anime_ids)
    served = ranking_metrics(answers["scores"], test)
    keys = ("recall@20", "recall@50", "ndcg@100", "rated_ndcg@100")
    figures = {
        "served": {k: served[k] for k in keys},
        "predict_rating_mae": rating_metrics(answers["predicted"], test)["rating_mae"],
        "expected_next@100": answers["expected_next"], "actual_next@100": answers["actual_next"],
        "calibration@100": answers["actual_next"] / answers["expected_next"],
        "request_p50_ms": float(np.median(answers["latencies"]) * 1000),
    }
    reported = {"ease": keys, "bias": ("rating_mae",), "item_knn": ("rating_mae",), "popularity": keys}
    path = write_result("quality_http", {
        "data": "anime-5k", "seed": seed, "users": test.n_users, "top_k": TOP_K, "figures": figures,
        "baselines": {name: {k: baselines[name][k] for k in ks} for name, ks in reported.items()},
        "ease_lambda": baselines["ease"]["ease_lambda"], "fitted_users": everyone.n_users,
        "item_item": result.item_item, "presence_map": result.presence_map, "ratings": result.ratings,
        "best_step": result.best_step,
    })
    print(f"served {figures}; baselines {baselines['ease']['ndcg@100']:.4f} (EASE)")
    print(f"wrote {path}")


if __name__ == "__main__":
    typer.run(main)
