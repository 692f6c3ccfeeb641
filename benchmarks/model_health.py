"""Model health over time on a simulated population: the champion's fresh-data quality beside
popularity and EASE (fitted on the same users) as people go on adding and rating shows.

A population is loaded into a store, a model trained and gated on its snapshot, then the
simulator's clock moves forward ``periods`` times by ``days`` each; after every move a full
crawl over real HTTP brings the changes in and one model health check (`sprout.monitoring`)
scores the champion on what people added since its snapshot. Writes
``benchmarks/results/model_health.json`` and the chart ``model_health.png`` beside it.

    uv run python benchmarks/model_health.py [--users 1500] [--periods 6] [--days 15]
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import typer

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import RESULTS, write_result  # noqa: E402


def crawl_everyone(store, simulator) -> dict:
    from sprout.crawl.job import CrawlRequest, run_crawl
    from sprout.mal.client import MalClient
    from sprout.mal.limiter import Unlimited

    request = CrawlRequest(only_usernames=simulator.population.usernames(), refresh_anime=False, force_full=True)

    async def run():
        async with MalClient(simulator.api_url, "benchmark", web_url=simulator.url, limiter=Unlimited(),
                             max_in_flight=8) as client:
            return await run_crawl(store, client, request)

    stats = asyncio.run(run())
    return {"users_ok": stats.users_ok, "entries_added": stats.entries_added, "entries_changed": stats.entries_changed,
            "entries_deleted": stats.entries_deleted}


def draw(document: dict, output: Path) -> Path:
    """Fresh NDCG@100 of the champion, EASE and popularity per check, and the drift figures."""
    checks = document["figures"]["checks"]
    days = [c["days_since_snapshot"] for c in checks]
    figure, (quality, drift) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("fresh_ndcg@100", "champion"), ("ease_ndcg@100", "EASE (same users)"),
                       ("popularity_ndcg@100", "popularity")):
        quality.plot(days, [c[key] for c in checks], marker="o", label=label)
    quality.set(xlabel="days since the champion's snapshot", ylabel="NDCG@100 on what people added since",
                title="Fresh-data quality", ylim=(0, None))
    quality.legend(fontsize=8)
    for key, label in (("profile_size_psi", "PSI, profile sizes"), ("rating_psi", "PSI, ratings"),
                       ("outside_corpus_share", "share of updated entries outside the corpus")):
        drift.plot(days, [c[key] for c in checks], marker="o", label=label)
    drift.set(xlabel="days since the champion's snapshot", title="Drift", ylim=(0, None))
    drift.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output


def main(
    users: int = typer.Option(1500, help="Simulated users."),
    anime: int = typer.Option(3000, help="Shows in the simulated catalogue."),
    periods: int = typer.Option(6, help="Health checks, one after each move of the clock."),
    days: int = typer.Option(15, help="Simulated days between checks."),
    config: str = typer.Option("small", help="Training preset."),
    seed: int = typer.Option(0, help="Population seed."),
) -> None:
    from sprout.evaluation.promotion import evaluate_artifact
    from sprout.registry.promotion import promotion_metrics
    from sprout.malsim.server import SimulatorServer
    from sprout.malsim.store_loader import load_population
    from sprout.malsim.synthetic_population import synthetic_population
    from sprout.monitoring.health import Champion, HealthRules, check_model_health
    from sprout.monitoring.report import headline
    from sprout.store import Store
    from sprout.training.presets import get_preset
    from sprout.training.run import build_dataset, train_model
    from sprout.workspace import Workspace

    load_average = round(os.getloadavg()[0], 2)
    home = Path(tempfile.mkdtemp(prefix="sprout-model-health-"))
    population = synthetic_population(users, seed=seed, n_anime=anime)
    with Store.open(home / "sprout.duckdb") as store:
        load_population(store, population, population.now)
    preset = get_preset(config)
    manifest = build_dataset(home, home / "sprout.duckdb", preset, population.now.date())
    began = time.perf_counter()
    version = train_model(home, preset, track=False)["model_version"]
    train_s = time.perf_counter() - began
    folder = Workspace(home).model(version)
    gate = evaluate_artifact(folder, Workspace(home).snapshot(manifest.snapshot_id))
    at_promotion = {k: v for k, v in promotion_metrics(gate).items() if k in ("ndcg@100", "recall@20", "ease_ndcg@100")}
    champion = Champion(version, folder, at_promotion)
    rules = HealthRules()

    checks, crawls = [], []
    with SimulatorServer(population) as simulator:
        for period in range(periods):
            changes = population.advance(days)
            with Store.open(home / "sprout.duckdb") as store:
                crawls.append({**changes, **crawl_everyone(store, simulator)})
            began = time.perf_counter()
            check = check_model_health(home / "sprout.duckdb", home, champion, rules=rules)
            row = {"days_since_snapshot": check.figures["days_since_snapshot"], **headline(check.figures),
                   "degraded": check.degraded, "check_s": round(time.perf_counter() - began, 2)}
            checks.append(row)
            print(json.dumps(row, default=str))

    document = {
        "settings": {"users": users, "anime": anime, "periods": periods, "days": days, "config": config, "seed": seed,
                     "corpus": manifest.corpus_size, "train_s": round(train_s, 1), "rules": rules.__dict__},
        "figures": {"at_promotion": at_promotion, "checks": [{k: v for k, v in c.items() if v is not None}
                                                             for c in checks], "crawls": crawls},
        "notes": {"load_average_at_start": load_average},
        "baselines": {"note": "popularity and EASE are scored on the same fresh users in the same check",
                      "at_promotion_test_users": {name: {k: gate["baselines"][name][k] for k in ("ndcg@100", "recall@20")}
                                                  for name in ("popularity", "ease")}},
    }
    path = write_result("model_health", document)
    print(path, draw(json.loads(path.read_text()), RESULTS / "model_health.png"))


if __name__ == "__main__":
    typer.run(main)
