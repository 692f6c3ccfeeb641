"""The main job on the embedded defaults: the whole loop, end to end, on this machine.

Starts the MAL simulator on 127.0.0.1, runs the ``pipeline`` flow (crawl → snapshot → training →
evaluation → gate → promotion) on a temporary Prefect server with DuckDB, W&B (offline without a
key) and the BentoML model store under ``SPROUT_HOME``, then starts ``sprout serve`` for the new
champion, asks it for a recommendation with explanations over HTTP and prints them. Then time
passes in the simulator (people add and rate shows following their tastes), the ``crawl`` flow
fetches what changed and the ``monitor`` flow checks the champion on it — fresh-data quality
beside popularity and EASE, drift, the service's own figures — and prints the check. It stops
everything it started. Needs no MAL account and no Prefect server.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import typer
from rich.console import Console
from rich.table import Table

from sprout.figures import percent, rating
from sprout.workspace import Workspace

console = Console()


def _environment(simulator, home: Path) -> None:
    """Point every stage at the simulator and keep everything it writes under ``home``."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary Prefect server can take longer than its 20 s default on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    os.environ.update(
        SPROUT_HOME=str(home),
        SPROUT_MAL_API_URL=simulator.api_url,
        SPROUT_MAL_WEB_URL=simulator.url,
        SPROUT_MAL_CLIENT_ID=os.environ.get("SPROUT_MAL_CLIENT_ID", "simulator"),
        # The local simulator needs no politeness; the real API keeps the 1 request/s default.
        SPROUT_MAL_REQUESTS_PER_SECOND="500",
        SPROUT_MAL_MAX_IN_FLIGHT="8",
    )
    os.environ.setdefault("SPROUT_MODEL_STORE", str(Workspace(home).model_store))


def sample_profile(population, min_entries: int = 40) -> tuple[str, list[dict]]:
    """A simulated user's whole list as a request profile (the first with enough entries)."""
    for username in population.usernames():
        if population.is_private(username):
            continue
        entries = population.truth(username)
        if len(entries) >= min_entries:
            return username, [{"anime_id": e["anime_id"], "score": e["score"], "status": e["status"]} for e in entries]
    raise RuntimeError("no simulated user has a long enough list for the sample")


def show_recommendations(username: str, answer: dict, explained: dict) -> None:
    table = Table(title=f"top 10 for {username} (model {answer['model']['version']})")
    for column in ("#", "title", "probability", "predicted rating", "because of (share of the score)"):
        table.add_column(column)
    for rank, item in enumerate(answer["recommendations"][:10], 1):
        because = ", ".join(f"{c['title']} ({percent(c['share'])})" for c in item.get("contributors") or [])
        table.add_row(str(rank), item["title"], percent(item["probability"]), rating(item["predicted_rating"]), because)
    console.print(table)
    impact = Table(title="most impactful entries of the profile")
    impact.add_column("title")
    impact.add_column("moves the top 50 by", justify="right")
    for entry in explained["most_impactful"][:5]:
        impact.add_row(entry["title"], percent(entry["impact"]))
    console.print(impact)
    surprise = Table(title="most surprising ratings")
    for column in ("title", "rated", "expected"):
        surprise.add_column(column)
    for entry in explained["most_surprising"][:5]:
        surprise.add_row(entry["title"], f"{entry['actual']:.0f}/10", rating(entry["predicted"]))
    console.print(surprise)
    if answer["ignored"]:
        console.print(f"ignored {len(answer['ignored'])} entries (e.g. {answer['ignored'][0]})")


def main(
    users: int = typer.Option(1500, min=50, help="Users in the simulated population."),
    seed: int = typer.Option(0, help="Population seed."),
    config: str = typer.Option("small", help="Training preset (tiny, small, default)."),
    home: Path = typer.Option(Path(os.environ.get("SPROUT_HOME", "var")), help="Where everything is written."),
    days: int = typer.Option(30, min=1, help="Simulated days between serving and the model health check."),
) -> None:
    """Run the whole loop on simulated MAL data and show a served recommendation."""
    from bentos.local_server import LocalServer
    from bentos.registry import ModelRegistry
    from sprout.malsim.synthetic_population import synthetic_population
    from sprout.malsim.server import SimulatorServer

    home = home.resolve()
    population = synthetic_population(users, seed=seed, n_anime=3000)
    with SimulatorServer(population) as simulator:
        console.print(f"simulator on {simulator.url}: {population.n_users} users, {population.n_entries:,} entries")
        _environment(simulator, home)
        from flows.crawl import CrawlParameters, crawl_flow
        from flows.monitor import MonitorParameters, monitor_flow
        from flows.pipeline import PipelineParameters, pipeline_flow
        from flows.retrain import RetrainParameters
        from sprout.cli.monitor import show_check

        crawl = CrawlParameters(usernames=population.usernames(), discover_online=False, max_users=users,
                                shared_rate_limit=False, show_progress=True)
        params = PipelineParameters(
            crawl=crawl, retrain=RetrainParameters(config=config, snapshot_date=population.now.date(), show_progress=True),
        )
        outcome = asyncio.run(pipeline_flow(params))
        username, profile = sample_profile(population)

        promotion = outcome["promotion"] or {}
        console.print(f"gate: {'promoted' if promotion.get('promoted') else 'not promoted'} — "
                      f"{'; '.join(promotion.get('reasons', []))}")
        store_dir = Path(os.environ["SPROUT_MODEL_STORE"])
        champion = ModelRegistry(store_dir).champion()
        if champion is None:
            console.print("[bold red]no champion to serve[/]: the gate refused the model and none was promoted before")
            raise typer.Exit(1)
        with LocalServer(store_dir, home / "logs" / "serve.log") as server:
            console.print(f"serving {champion.version} on {server.url}")
            request = {"profile": profile, "top_k": 10, "explain": True}
            answer = httpx.post(f"{server.url}/recommend", json=request, timeout=60)
            explained = httpx.post(f"{server.url}/explain", json={"profile": profile, "top_k": 10}, timeout=60)
            for response in (answer, explained):
                if response.status_code != 200:
                    console.print(f"[bold red]{response.request.url.path} answered {response.status_code}[/]: {response.text}")
                    raise typer.Exit(1)
            show_recommendations(username, answer.json(), explained.json())

            # Time passes: people add and rate shows following their tastes. Crawl what changed and
            # check the champion on it, with the running service's own figures beside.
            changes = population.advance(days)
            console.print(f"{days} simulated days later: {changes['added']:,} entries added, "
                          f"{changes['changed']:,} changed, {changes['deleted']:,} deleted, {changes['new_users']} new users")
            asyncio.run(crawl_flow(crawl.model_copy(update={"usernames": population.usernames(), "announce": False,
                                                            "spool": False, "max_users": population.n_users})))
            health = monitor_flow(MonitorParameters(service_url=server.url))
            if health.get("skipped"):
                console.print("[bold red]the monitor found no champion to check[/]")
                raise typer.Exit(1)
            show_check(health["check"])
    console.print(f"done; everything is under {home} (serve again: SPROUT_MODEL_STORE={store_dir} sprout serve)")
    sys.stdout.flush()


if __name__ == "__main__":
    typer.run(main)
