"""Explanations with the first-order normaliser against exact ones, on a model trained on real data.

anime-5k, one split seed: the `default` recipe trains on the training users (as
`benchmarks/quality.py` does) and the model is loaded twice in this process, once per
``explain_normaliser``. Each test user's fold-in entries go to ``explain`` with default options
(``top_k`` 20); for every recommendation the two answers' top-3 contributors are compared, in
order and as sets, and so are the 10 most impactful entries. Both engines are timed on the same
requests, beside a 300-entry profile (the longest fold-ins are shorter).

Goal: the first-order contributors identical to the exact ones for >= 95% of recommendations.

    uv run python benchmarks/explain_agreement.py [--data ../shared/data/anime-5k] [--seed 98765] [--users 200]

Writes ``benchmarks/results/explain_agreement.json``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import typer

from quality import DATA, build_snapshots, default_recipe
from quality_http import fold_in_profile
from results import write_result
from sprout.evaluation.held_out import held_out_users
from sprout.inference.engine import Recommender
from sprout.inference.network import EXACT_HEAD
from sprout.inference.requests import ExplainRequest
from sprout.model.artifact import write_model_artifact
from sprout.training.loop import train

GOAL = 0.95


def contributors(response) -> list[list[int]]:
    return [[c.anime_id for c in r.contributors] for r in response.recommendations]


def agreement(exact, approximate) -> dict[str, int]:
    """Counts of recommendations whose top-3 contributors agree (in order, as sets) and of
    answers whose recommendations and most impactful entries agree."""
    same_shows = [r.anime_id for r in exact.recommendations] == [r.anime_id for r in approximate.recommendations]
    pairs = list(zip(contributors(exact), contributors(approximate), strict=True))
    return {
        "recommendations": len(pairs),
        "ordered": sum(a == b for a, b in pairs),
        "as_sets": sum(set(a) == set(b) for a, b in pairs),
        "same_recommendations": int(same_shows),
        "same_impactful": int([i.anime_id for i in exact.most_impactful] == [i.anime_id for i in approximate.most_impactful]),
    }


def p50_ms(engine: Recommender, requests: list[ExplainRequest]) -> float:
    times = []
    for request in requests:
        began = time.perf_counter()
        engine.explain(request)
        times.append(time.perf_counter() - began)
    return 1000 * float(np.median(times))


def trained_artifact(data: Path, seed: int, home: Path):
    """The default recipe trained on one anime-5k split: (snapshot, model artifact folder)."""
    snapshot = build_snapshots(data, home / "anime-5k", [seed])[0]
    model_config, train_config = default_recipe(snapshot)
    result = train(snapshot, model_config, train_config, home / "run")
    return snapshot, write_model_artifact(home / "models", result.model, snapshot, {"metrics": {}})[1]


def explain_requests(snapshot, users: int) -> list[ExplainRequest]:
    test = held_out_users(snapshot, "test")
    return [
        ExplainRequest(profile=fold_in_profile(test, row, snapshot.corpus.anime_ids), top_k=20)
        for row in range(min(users, test.n_users))
    ]


def compared(exact: Recommender, approximate: Recommender, requests: list[ExplainRequest]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for request in requests:
        counts = agreement(exact.explain(request), approximate.explain(request))
        totals = {key: totals.get(key, 0) + value for key, value in counts.items()}
    return totals


def main(
    data: Path = typer.Option(DATA, help="Folder of the anime-5k data set."),
    seed: int = typer.Option(98765, help="Split seed."),
    users: int = typer.Option(200, min=10, help="Test users explained by both engines."),
) -> None:
    if not (data / "anime_history.dat").is_file():
        raise typer.BadParameter(f"no anime-5k data at {data}")
    with tempfile.TemporaryDirectory(prefix="sprout-explain-agreement-") as scratch:
        snapshot, folder = trained_artifact(data, seed, Path(scratch))
        exact = Recommender.load(folder, devices=1)
        approximate = Recommender.load(folder, devices=1, explain_normaliser="first_order")
        requests = explain_requests(snapshot, users)
        totals = compared(exact, approximate, requests)
        lengths = [len(request.profile) for request in requests]
        long_profile = [{"anime_id": int(i), "score": 7, "status": "completed"} for i in snapshot.corpus.anime_ids[:300]]
        long_request = ExplainRequest(profile=long_profile, top_k=20)
        timing = {
            "exact_p50_ms": p50_ms(exact, requests), "first_order_p50_ms": p50_ms(approximate, requests),
            "exact_300_entries_ms": p50_ms(exact, [long_request] * 15),
            "first_order_300_entries_ms": p50_ms(approximate, [long_request] * 15),
        }
        model_config = exact.network.config.model_dump()
    n = totals["recommendations"]
    figures = {
        "top3_identical_share": totals["ordered"] / n,
        "top3_same_set_share": totals["as_sets"] / n,
        "same_recommendations_share": totals["same_recommendations"] / len(requests),
        "same_most_impactful_share": totals["same_impactful"] / len(requests),
        "recommendations_compared": n,
        "first_order_ms": {"p50": timing["first_order_p50_ms"], "entries_300": timing["first_order_300_entries_ms"]},
        "exact_head": EXACT_HEAD,
        "goals": {"top3_identical_share": GOAL},
    }
    baselines = {"exact_ms": {"p50": timing["exact_p50_ms"], "entries_300": timing["exact_300_entries_ms"]}}
    path = write_result("explain_agreement", {
        "data": "anime-5k", "seed": seed, "users": len(requests), "corpus_size": snapshot.manifest.corpus_size,
        "model_config": model_config,
        "profile_entries": {"median": float(np.median(lengths)), "max": int(max(lengths))},
        "figures": figures, "baselines": baselines,
    })
    print(f"top-3 contributors identical for {figures['top3_identical_share']:.1%} of {n} recommendations "
          f"(as sets {figures['top3_same_set_share']:.1%}); explain p50 {timing['first_order_p50_ms']:.1f} ms "
          f"first-order vs {timing['exact_p50_ms']:.1f} ms exact")
    print(f"wrote {path}")


if __name__ == "__main__":
    typer.run(main)
