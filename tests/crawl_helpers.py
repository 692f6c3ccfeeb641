"""Helpers for crawl tests: a fast client for the simulator and truth comparisons."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from sprout.crawl.job import CrawlRequest, run_crawl, utc_now
from sprout.crawl.stats import CrawlStats
from sprout.mal.client import MalClient
from sprout.mal.limiter import Unlimited
from sprout.malsim.server import SimulatorServer
from sprout.store import Store

CLIENT_ID = "test-client-id-0123"


def fast_client(simulator: SimulatorServer, **options) -> MalClient:
    settings = dict(
        web_url=simulator.url, limiter=Unlimited(), max_in_flight=8, backoff_base_s=0.01, backoff_max_s=0.05,
        throttle_pause_s=0.2,
    )
    settings.update(options)
    return MalClient(simulator.api_url, CLIENT_ID, **settings)


def crawl(store: Store, simulator: SimulatorServer, request: CrawlRequest, *, clock=utc_now, **client_options) -> CrawlStats:
    async def run() -> CrawlStats:
        async with fast_client(simulator, **client_options) as client:
            return await run_crawl(store, client, request, clock=clock)

    return asyncio.run(run())


def later_clock(days: float):
    """A clock ``days`` ahead of now: scheduled users become due without waiting."""
    return lambda: datetime.now(timezone.utc) + timedelta(days=days)


def row_key(row) -> tuple:
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    return (
        get("anime_id"), get("status"), get("score"), get("num_episodes_watched"), get("is_rewatching"),
        get("updated_at").astimezone(timezone.utc), get("start_date"), get("finish_date"),
    )


def truth_rows(simulator: SimulatorServer, username: str) -> set[tuple]:
    return {row_key(r) for r in simulator.population.truth(username)}


def stored_rows(store: Store, username: str) -> set[tuple]:
    return {row_key(e) for e in store.user_entries(username)}


def public_users(simulator: SimulatorServer) -> list[str]:
    population = simulator.population
    return [u for u in population.usernames() if not population.is_private(u)]
