"""Ingest flow: the store's one writer for crawls that ran elsewhere (spool mode).

On the store's host: apply what crawl workers published to ``SPROUT_CRAWL_SPOOL`` (in name
order, each batch exactly once) holding the DuckDB writer slot, purge withdrawn users' entries,
refresh metadata of shows the new lists reference, then hand the next due users out as
assignments for the crawl workers, announcing each (``sprout.crawl.assigned``, which starts a
crawl run for it on any crawl worker). Runs on ``sprout.crawl.spooled`` and on a schedule; emits
``sprout.crawl.completed`` when it applied batches (what retraining listens for). Without a
spool configured it does nothing: crawls then write the store themselves.
"""

from __future__ import annotations

from datetime import timedelta

from prefect import flow, get_run_logger, runtime, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from pydantic import BaseModel, Field

from flows.crawl import CRAWL_ASSIGNED, CRAWL_COMPLETED, publish_figures, purge_withdrawn
from flows.limits import PrefectRateLimiter, duckdb_writer, ensure_limits
from sprout.config import Settings
from sprout.crawl.access import StoreFile
from sprout.crawl.anime import refresh_anime
from sprout.crawl.assignments import waiting
from sprout.crawl.ingest import ingest_spool
from sprout.crawl.job import CrawlRequest, hand_out, utc_now
from sprout.crawl.policy import CrawlPolicy
from sprout.crawl.spool import Spool
from sprout.crawl.stats import CrawlStats
from sprout.mal.client import MalClient
from sprout.mal.discovery import RecentlyOnlineSource


class IngestParameters(BaseModel):
    """What the ingest deployment's form asks for."""

    assign_users: int = Field(500, ge=0, le=100_000, description="Most due users to hand out to crawl workers (0: none).")
    assignments: int = Field(1, ge=1, le=64, description="Split them into this many assignments, one per crawl worker.")
    discover_online: bool = Field(True, description="Discover users on the recently-online page before handing out.")
    full_refresh: bool = Field(False, description="Have the workers list whole profiles to catch deletions.")
    claim_hours: float = Field(
        6.0, gt=0, le=168, description="Hours handed-out users stay with their worker before they are handed out again."
    )
    refresh_anime: bool = Field(True, description="Refresh metadata of shows the store lacks or holds stale.")
    shared_rate_limit: bool = Field(
        True, description="Spend the Prefect global MAL rate limit (off only for a local simulator)."
    )
    announce: bool = Field(
        True, description="Emit sprout.crawl.completed when batches were applied, and sprout.crawl.assigned per assignment."
    )


def _store(settings: Settings) -> StoreFile:
    return StoreFile(settings.db_path, wait_s=30.0, slot=duckdb_writer)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
async def ingest_batches() -> dict:
    """Every pending batch, in order; a retry re-applies nothing already recorded."""
    settings = Settings()
    stats = await ingest_spool(
        Spool.from_settings(settings), _store(settings), policy=CrawlPolicy.from_settings(settings),
        group_entries=settings.ingest_group_entries,
    )
    return stats.as_dict()


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
async def refresh_and_hand_out(params: IngestParameters) -> dict:
    """Anime metadata, then the next assignments (only when none is waiting to be taken)."""
    settings = Settings()
    spool, store, policy = Spool.from_settings(settings), _store(settings), CrawlPolicy.from_settings(settings)
    stats = CrawlStats()
    limiter = PrefectRateLimiter(requests_per_second=settings.mal_requests_per_second) if params.shared_rate_limit else None
    handed = []
    async with MalClient.from_settings(settings, limiter=limiter) as client:
        if params.refresh_anime:
            await refresh_anime(store, client, policy, stats, now=utc_now())
        if params.assign_users and not waiting(spool):
            request = CrawlRequest(
                sources=[RecentlyOnlineSource(client)] if params.discover_online else [],
                max_users=params.assign_users, force_full=params.full_refresh, policy=policy,
            )
            handed = await hand_out(
                store, spool, request, parts=params.assignments, claim_for=timedelta(hours=params.claim_hours), stats=stats
            )
    return {
        "anime_refreshed": stats.anime_refreshed,
        "anime_failed": stats.anime_failed,
        "users_discovered": stats.users_discovered,
        "assignments_handed_out": len(handed),
        "users_handed_out": sum(len(assignment.users) for assignment in handed),
        "handed_out": {assignment.name: len(assignment.users) for assignment in handed},
    }


def announce_assignments(handed_out: dict[str, int]) -> None:
    """One ``sprout.crawl.assigned`` per assignment: each starts a crawl run for it, so as many
    crawl workers crawl at once as there are assignments (up to the deployment's limit)."""
    for name, users in handed_out.items():
        emit_event(
            event=CRAWL_ASSIGNED,
            resource={"prefect.resource.id": f"sprout.assignment.{name}", "prefect.resource.name": "sprout assignment"},
            payload={"assignment": name, "users": users},
        )


@flow(name="ingest", log_prints=True)
async def ingest_flow(params: IngestParameters = IngestParameters()) -> dict:
    """Apply the crawl spool to DuckDB as its one writer, then hand out the next due users."""
    settings = Settings()
    logger = get_run_logger()
    if settings.crawl_spool is None:
        logger.info("SPROUT_CRAWL_SPOOL is not set: crawls write the store directly, there is nothing to ingest")
        return {}
    if (params.discover_online or params.refresh_anime) and settings.client_id() is None:
        raise ValueError("SPROUT_MAL_CLIENT_ID is not set: discovery and anime refresh need a client id")
    run_id = str(runtime.flow_run.id or "local")
    await ensure_limits(settings.mal_requests_per_second)
    figures = await ingest_batches()
    async with duckdb_writer():
        figures = {**figures, **purge_withdrawn()}
    figures = {**figures, **await refresh_and_hand_out(params)}
    handed_out = figures.pop("handed_out")
    if params.announce:
        announce_assignments(handed_out)
    publish_figures(
        figures, run_id, announce=params.announce and figures["batches"] > 0, event=CRAWL_COMPLETED, key="ingest-figures"
    )
    logger.info("ingest figures: %s", figures)
    return figures


if __name__ == "__main__":
    import asyncio

    asyncio.run(ingest_flow())
