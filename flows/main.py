"""The main job on the embedded defaults: the simulator, a crawl into DuckDB, what got stored.

Runs with no MAL account and no Prefect server: the simulator serves a seeded synthetic
population on 127.0.0.1 and Prefect starts a temporary local server for the flow run.
"""

from __future__ import annotations

import asyncio
import os

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _show_store(db_path) -> None:
    from sprout.store import Store

    with Store.open(db_path, read_only=True) as store:
        counts = store.counts()
        sql = store.connection
        top = sql.execute(
            """
            SELECT a.title, count(*) AS users, round(avg(nullif(e.score, 0)), 2) AS mean_score
            FROM list_entries e JOIN anime a USING (anime_id)
            GROUP BY a.title ORDER BY users DESC LIMIT 5
            """
        ).fetchall()
    table = Table(title=f"stored in {db_path}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, value in counts.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    console.print(table)
    shows = Table(title="most listed shows")
    for column in ("title", "users", "mean score"):
        shows.add_column(column)
    for title, users, mean_score in top:
        shows.add_row(title, str(users), str(mean_score))
    console.print(shows)


def main(
    users: int = typer.Option(300, min=1, help="Users in the simulated population."),
    seed: int = typer.Option(0, help="Population seed."),
) -> None:
    """Start the simulator, run the crawl flow against it, print what was stored."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The temporary Prefect server can take longer than its 20 s default on a busy 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from sprout.config import Settings
    from sprout.malsim.population import Population
    from sprout.malsim.server import SimulatorServer

    population = Population.synthetic(users, seed=seed)
    with SimulatorServer(population) as simulator:
        console.print(f"simulator on {simulator.url}: {population.n_users} users, {population.n_entries:,} entries")
        os.environ.update(
            SPROUT_MAL_API_URL=simulator.api_url,
            SPROUT_MAL_WEB_URL=simulator.url,
            SPROUT_MAL_CLIENT_ID=os.environ.get("SPROUT_MAL_CLIENT_ID", "simulator"),
            # The local simulator needs no politeness; the real API keeps the 1 request/s default.
            SPROUT_MAL_REQUESTS_PER_SECOND="500",
            SPROUT_MAL_MAX_IN_FLIGHT="8",
        )
        from flows.crawl import CrawlParameters, crawl_flow

        params = CrawlParameters(usernames=population.usernames(), shared_rate_limit=False, max_users=users)
        figures = asyncio.run(crawl_flow(params))
    console.print({k: v for k, v in figures.items() if v})
    _show_store(Settings().db_path)


if __name__ == "__main__":
    typer.run(main)
