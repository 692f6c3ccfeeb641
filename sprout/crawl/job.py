"""One crawl run: discover → choose due users → fetch within the rate budget → store → refresh anime.

The library entry point used by both ``sprout crawl`` and the Prefect crawl flow. The store is
reached in short sessions (`access.py`): given a `StoreFile`, the DuckDB file is open only for
the run's bookkeeping, the due-user query and each batch write, never while fetching.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sprout.crawl.access import StoreAccess, as_access, in_session
from sprout.crawl.anime import refresh_anime
from sprout.crawl.policy import CrawlPolicy
from sprout.crawl.profiles import Clock, ProfileCrawler, Progress
from sprout.crawl.stats import CrawlStats
from sprout.mal.client import MalClient
from sprout.mal.discovery import DiscoverySource
from sprout.store import DueUser, Store

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class CrawlRequest:
    """What one run should do."""

    sources: Sequence[DiscoverySource] = ()
    only_usernames: Sequence[str] | None = None  # crawl exactly these (a seed list), due or not
    max_users: int = 1000
    ignore_schedule: bool = False  # crawl every known user now, due or not
    force_full: bool = False
    refresh_anime: bool = True
    anime_limit: int = 10_000
    policy: CrawlPolicy = field(default_factory=CrawlPolicy)


async def discover(
    store: Store | StoreAccess, sources: Sequence[DiscoverySource], now: datetime, stats: CrawlStats | None = None
) -> int:
    """Ask every source for usernames; returns how many were new to the store.

    A source that fails is logged and counted (``stats.sources_failed``): the users already known
    are still crawled.
    """
    access = as_access(store)
    new = 0
    for source in sources:
        try:
            names = await source.discover()
        except Exception:  # one broken page must not cost the run its due users
            log.warning("discovery source %s failed", source.name, exc_info=True)
            if stats is not None:
                stats.sources_failed += 1
            continue
        new += await in_session(access, lambda s, names=names, source=source: s.add_users(names, source.name, now))
    return new


async def _due_users(access: StoreAccess, request: CrawlRequest, now: datetime) -> list[DueUser]:
    def query(store: Store) -> list[DueUser]:
        if request.only_usernames is not None:
            store.add_users(request.only_usernames, "seed_list", now)
            return store.user_states(request.only_usernames)
        return store.due_users(None if request.ignore_schedule else now, request.max_users)

    return await in_session(access, query)


async def run_crawl(
    store: Store | StoreAccess,
    client: MalClient,
    request: CrawlRequest,
    *,
    clock: Clock = utc_now,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> CrawlStats:
    """Run one crawl and record it in ``crawl_runs``; returns its figures.

    ``store`` is an open `Store` (held for the whole run by its caller) or a `StoreAccess` such as
    `StoreFile`, which opens the file for each transaction only.
    """
    access = as_access(store)
    stats = CrawlStats()
    started = time.perf_counter()
    run_id = run_id or uuid.uuid4().hex
    now = clock()
    params = {
        "sources": [s.name for s in request.sources],
        "only_usernames": len(request.only_usernames or ()),
        "max_users": request.max_users,
        "ignore_schedule": request.ignore_schedule,
        "force_full": request.force_full,
    }
    await in_session(access, lambda s: s.start_crawl_run(run_id, now, params))
    requests_before = client.stats.as_dict()
    status = "failed"
    try:
        stats.users_discovered = await discover(access, request.sources, now, stats)
        due = await _due_users(access, request, now)
        stats.users_due = len(due)
        crawler = ProfileCrawler(access, client, request.policy, clock=clock, progress=progress)
        await crawler.run(due, stats, force_full=request.force_full)
        if request.refresh_anime:
            await refresh_anime(access, client, request.policy, stats, now=clock(), limit=request.anime_limit)
        status = "completed"
    finally:
        after = client.stats.as_dict()
        stats.requests = after["requests"] - requests_before["requests"]
        stats.retries = after["retries"] - requests_before["retries"]
        stats.status_429 = after["status_429"] - requests_before["status_429"]
        stats.status_5xx = after["status_5xx"] - requests_before["status_5xx"]
        stats.duration_s = round(time.perf_counter() - started, 3)
        finished = clock()
        await in_session(access, lambda s: s.finish_crawl_run(run_id, finished, status, stats.as_dict()))
    return stats
