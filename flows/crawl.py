"""Crawl flow: discover → choose due users → fetch within the rate budget → store → refresh anime.

The DuckDB file and its writer slot are taken for each short transaction only (the crawl's
bookkeeping, the due-user query, each batch write), never while waiting on MAL, so other stages
can use the store during a crawl. Crawls themselves still run one at a time (`sprout-crawl`):
two at once would fetch the same due users.

With ``SPROUT_CRAWL_SPOOL`` set on the worker (spool mode), a run never opens the store: it
crawls the assignments the ``ingest`` flow handed out on the store's host, publishes the lists to
the spool and emits ``sprout.crawl.spooled``, which starts that flow. Claims in the store keep
such runs off each other's users, so they need no crawl slot and may run on any host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import BaseModel, Field
from prefect import flow, get_client, get_run_logger, runtime, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.asyncio import concurrency
from prefect.events import emit_event

from flows.limits import DUCKDB_WRITER_LEASE_S, PrefectRateLimiter, duckdb_writer, ensure_limits, spool_take
from sprout.config import Settings
from sprout.crawl.access import StoreFile
from sprout.crawl.job import CrawlRequest, crawl_assignments, run_crawl
from sprout.crawl.policy import CrawlPolicy
from sprout.crawl.spool import Spool
from sprout.mal.client import MalClient
from sprout.mal.discovery import RecentlyOnlineSource
from sprout.progress import crawl_progress
from sprout.store import Store

CRAWL_COMPLETED = "sprout.crawl.completed"
CRAWL_SPOOLED = "sprout.crawl.spooled"
CRAWL_ASSIGNED = "sprout.crawl.assigned"  # one per assignment handed out; starts a crawl for it
CRAWL_LIMIT = "sprout-crawl"


class CrawlParameters(BaseModel):
    """What the crawl deployment's form asks for."""

    usernames: list[str] | None = Field(None, description="Crawl exactly these users (a seed list), due or not.")
    discover_online: bool = Field(True, description="Discover users on the recently-online page first.")
    max_users: int = Field(500, ge=1, le=100_000, description="Most users to crawl this run.")
    full_refresh: bool = Field(False, description="List whole profiles to catch deletions.")
    refresh_anime: bool = Field(True, description="Refresh anime metadata older than 30 days.")
    shared_rate_limit: bool = Field(
        True, description="Spend the Prefect global MAL rate limit (off only for a local simulator)."
    )
    show_progress: bool = Field(False, description="Draw a progress bar on the terminal (interactive runs).")
    announce: bool = Field(True, description="Emit sprout.crawl.completed (off inside the pipeline, which retrains itself).")
    spool: bool = Field(
        True,
        description="Where SPROUT_CRAWL_SPOOL is set, crawl the handed-out assignments into the spool (the users "
        "are the ingest deployment's choice then); off: write the store directly, on the store's host.",
    )
    assignment: str | None = Field(
        None,
        description="In spool mode, crawl only this handed-out assignment (what a sprout.crawl.assigned event "
        "passes); empty: every waiting one.",
    )


@task(cache_policy=NO_CACHE)
async def crawl_profiles(params: CrawlParameters, run_id: str) -> dict:
    settings = Settings()  # read here, never passed around: it holds the client id
    limiter = PrefectRateLimiter(requests_per_second=settings.mal_requests_per_second) if params.shared_rate_limit else None
    async with MalClient.from_settings(settings, limiter=limiter) as client:
        request = CrawlRequest(
            sources=[RecentlyOnlineSource(client)] if params.discover_online else [],
            only_usernames=params.usernames,
            max_users=params.max_users,
            force_full=params.full_refresh,
            refresh_anime=params.refresh_anime,
            policy=CrawlPolicy.from_settings(settings),
        )
        store = StoreFile(settings.db_path, wait_s=30.0, slot=duckdb_writer)
        with crawl_progress(params.show_progress) as progress:
            stats = await run_crawl(store, client, request, run_id=run_id, progress=progress)
    return stats.as_dict()


@task(cache_policy=NO_CACHE)
async def crawl_into_spool(params: CrawlParameters, run_id: str) -> dict:
    settings = Settings()
    limiter = PrefectRateLimiter(requests_per_second=settings.mal_requests_per_second) if params.shared_rate_limit else None
    async with MalClient.from_settings(settings, limiter=limiter) as client:
        with crawl_progress(params.show_progress) as progress:
            stats = await crawl_assignments(
                Spool.from_settings(settings), client, CrawlPolicy.from_settings(settings), run_id=run_id,
                progress=progress, take_slot=spool_take, assignment=params.assignment or None,
            )
    return stats.as_dict()


@task(cache_policy=NO_CACHE)
async def ensure_crawl_limit() -> None:
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(CRAWL_LIMIT, limit=1)


@asynccontextmanager
async def one_crawl_at_a_time() -> AsyncIterator[None]:
    async with concurrency(CRAWL_LIMIT, occupy=1, strict=True, lease_duration=DUCKDB_WRITER_LEASE_S):
        yield


@task(cache_policy=NO_CACHE)
def purge_withdrawn() -> dict:
    """Delete the entries of users private or gone for longer than SPROUT_WITHDRAWN_RETENTION_DAYS."""
    from datetime import UTC, datetime, timedelta

    from sprout.store.retention import purge_withdrawn_users

    settings = Settings()
    with Store.open(settings.db_path, wait_s=30.0) as store:
        purged = purge_withdrawn_users(store, datetime.now(UTC), timedelta(days=settings.withdrawn_retention_days))
    return {"withdrawn_users_purged": purged.users, "withdrawn_entries_purged": purged.entries}


@task(cache_policy=NO_CACHE)
def publish_figures(
    figures: dict, run_id: str, *, announce: bool = True, event: str = CRAWL_COMPLETED, key: str = "crawl-figures"
) -> None:
    """The figures as a table artifact; ``announce`` emits ``event`` (by default the one
    retraining listens for)."""
    create_table_artifact(
        key=key,
        table=[{"figure": name, "value": value} for name, value in figures.items()],
        description=f"Crawl run {run_id}",
    )
    if not announce:
        return
    emit_event(
        event=event,
        resource={"prefect.resource.id": f"sprout.crawl.{run_id}", "prefect.resource.name": "sprout crawl"},
        payload=figures,
    )


async def crawl_and_publish(params: CrawlParameters) -> dict:
    """The body both crawl flows share: limits, the crawl slot, the crawl, its artifact/event."""
    settings = Settings()
    if settings.client_id() is None:
        raise ValueError("SPROUT_MAL_CLIENT_ID is not set: the MAL API needs a client id")
    run_id = str(runtime.flow_run.id or "local")
    if params.assignment and not (params.spool and settings.crawl_spool):
        raise ValueError("an assignment is crawled into the spool: set SPROUT_CRAWL_SPOOL on this worker")
    await ensure_limits(settings.mal_requests_per_second)
    if params.spool and settings.crawl_spool:
        if params.usernames is not None:
            raise ValueError("in spool mode the ingest deployment chooses the users: pass usernames to it")
        figures = await crawl_into_spool(params, run_id)
        publish_figures(figures, run_id, announce=params.announce and figures["batches_spooled"] > 0, event=CRAWL_SPOOLED)
        get_run_logger().info("crawl figures (spooled): %s", figures)
        return figures
    await ensure_crawl_limit()
    async with one_crawl_at_a_time():
        figures = await crawl_profiles(params, run_id)
        async with duckdb_writer():  # the crawl takes it per write; the purge needs it too
            figures = {**figures, **purge_withdrawn()}
    publish_figures(figures, run_id, announce=params.announce)
    get_run_logger().info("crawl figures: %s", figures)
    return figures


@flow(name="crawl", log_prints=True)
async def crawl_flow(params: CrawlParameters = CrawlParameters()) -> dict:
    """Crawl MAL (or the simulator) into DuckDB, taking the single-writer limit for each write; in
    spool mode crawl the handed-out assignments into the spool instead."""
    return await crawl_and_publish(params)


@flow(name="refresh-anime", log_prints=True)
async def refresh_anime_flow() -> dict:
    """Refresh anime metadata (titles, genres, relations) older than 30 days; crawls no profiles."""
    return await crawl_and_publish(
        CrawlParameters(usernames=[], discover_online=False, refresh_anime=True, announce=False, spool=False)
    )


if __name__ == "__main__":
    import asyncio

    asyncio.run(crawl_flow())
