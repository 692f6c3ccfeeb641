"""One crawl run: discover → choose due users → fetch within the rate budget → store → refresh anime.

The library entry point used by both ``sprout crawl`` and the Prefect crawl flow.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sprout.crawl.anime import refresh_anime
from sprout.crawl.policy import CrawlPolicy
from sprout.crawl.profiles import Clock, ProfileCrawler, Progress
from sprout.crawl.stats import CrawlStats
from sprout.mal.client import MalClient
from sprout.mal.discovery import DiscoverySource
from sprout.store import Store


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


async def discover(store: Store, sources: Sequence[DiscoverySource], now: datetime) -> int:
    """Ask every source for usernames; returns how many were new to the store."""
    new = 0
    for source in sources:
        names = await source.discover()
        new += store.add_users(names, source.name, now)
    return new


async def run_crawl(
    store: Store,
    client: MalClient,
    request: CrawlRequest,
    *,
    clock: Clock = utc_now,
    progress: Progress | None = None,
    run_id: str | None = None,
) -> CrawlStats:
    """Run one crawl and record it in ``crawl_runs``; returns its figures."""
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
    store.start_crawl_run(run_id, now, params)
    requests_before = client.stats.as_dict()
    status = "failed"
    try:
        stats.users_discovered = await discover(store, request.sources, now)
        if request.only_usernames is not None:
            store.add_users(request.only_usernames, "seed_list", now)
            due = store.user_states(request.only_usernames)
        elif request.ignore_schedule:
            due = store.due_users(None, request.max_users)
        else:
            due = store.due_users(now, request.max_users)
        stats.users_due = len(due)
        crawler = ProfileCrawler(store, client, request.policy, clock=clock, progress=progress)
        await crawler.run(due, stats, force_full=request.force_full)
        if request.refresh_anime:
            await refresh_anime(store, client, request.policy, stats, now=clock(), limit=request.anime_limit)
        status = "completed"
    finally:
        after = client.stats.as_dict()
        stats.requests = after["requests"] - requests_before["requests"]
        stats.retries = after["retries"] - requests_before["retries"]
        stats.status_429 = after["status_429"] - requests_before["status_429"]
        stats.status_5xx = after["status_5xx"] - requests_before["status_5xx"]
        stats.duration_s = round(time.perf_counter() - started, 3)
        store.finish_crawl_run(run_id, clock(), status, stats.as_dict())
    return stats
