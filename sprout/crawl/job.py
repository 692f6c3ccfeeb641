"""One crawl run: discover → choose due users → fetch within the rate budget → store → refresh anime.

The library entry points used by both ``sprout crawl`` and the Prefect flows. `run_crawl` does
it all on the store's host, reaching the store in short sessions (`access.py`): given a
`StoreFile`, the DuckDB file is open only for the run's bookkeeping, the due-user query and each
batch write, never while fetching.

Split across hosts by the spool, the same steps run in two places: `hand_out` on the store's
host discovers, chooses and claims due users and publishes them as assignments; `crawl_assignments`
on any host fetches them with the same crawler, its batches published to the spool instead of
written (`ingest.ingest_spool` writes them later on the store's host). See `assignments` for the
claims that keep two workers off one user.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sprout.crawl.access import Slot, StoreAccess, as_access, in_session
from sprout.crawl.anime import refresh_anime
from sprout.crawl.assignments import Assignment, finish_assignment, publish_assignment, sweep_expired, take_assignment
from sprout.crawl.policy import CrawlPolicy
from sprout.crawl.profiles import Clock, ProfileCrawler, Progress
from sprout.crawl.spool import Spool, SpoolWriter, default_worker
from sprout.crawl.stats import CrawlStats
from sprout.mal.client import MalClient
from sprout.mal.discovery import DiscoverySource
from sprout.store import DueUser, Store
from sprout.store.crawl_state import claim_users

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


def _choose(store: Store, request: CrawlRequest, now: datetime) -> list[DueUser]:
    """The users this run fetches: the seed list, or the due queue; never users a crawl worker
    holds a claim on."""
    if request.only_usernames is not None:
        store.add_users(request.only_usernames, "seed_list", now)
        return store.user_states(request.only_usernames, unclaimed_at=now)
    return store.due_users(None if request.ignore_schedule else now, request.max_users, unclaimed_at=now)


async def _due_users(access: StoreAccess, request: CrawlRequest, now: datetime) -> list[DueUser]:
    return await in_session(access, lambda store: _choose(store, request, now))


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
        _count_requests(stats, client, requests_before, started)
        finished = clock()
        await in_session(access, lambda s: s.finish_crawl_run(run_id, finished, status, stats.as_dict()))
    return stats


def _count_requests(stats: CrawlStats, client: MalClient, before: dict[str, int], started: float) -> None:
    after = client.stats.as_dict()
    stats.requests = after["requests"] - before["requests"]
    stats.retries = after["retries"] - before["retries"]
    stats.status_429 = after["status_429"] - before["status_429"]
    stats.status_5xx = after["status_5xx"] - before["status_5xx"]
    stats.duration_s = round(time.perf_counter() - started, 3)


async def hand_out(
    store: Store | StoreAccess,
    spool: Spool,
    request: CrawlRequest,
    *,
    parts: int = 1,
    claim_for: timedelta = timedelta(hours=6),
    clock: Clock = utc_now,
    stats: CrawlStats | None = None,
) -> list[Assignment]:
    """On the store's host: discover, choose the due users a crawl would (unclaimed ones only),
    claim them for ``claim_for`` and publish them as up to ``parts`` assignments for crawl
    workers; returns the assignments published. Expired assignments are swept first."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    access = as_access(store)
    stats = stats if stats is not None else CrawlStats()
    now = clock()
    await asyncio.to_thread(sweep_expired, spool, now)
    stats.users_discovered += await discover(access, request.sources, now, stats)
    until = now + claim_for

    def claim(opened: Store) -> list[Assignment]:
        due = _choose(opened, request, now)
        shares = [due[part::parts] for part in range(parts)]  # each share gets some of the stalest
        handed = [Assignment(spool.new_name("plan"), share, now, until, request.force_full) for share in shares if share]
        with opened.transaction() as connection:
            for assignment in handed:
                claim_users(connection, [user.username for user in assignment.users], assignment.name, until)
        return handed

    assignments = await in_session(access, claim)
    for assignment in assignments:  # after the claims commit: a file never names unclaimed users
        await asyncio.to_thread(publish_assignment, spool, assignment)
    stats.users_due += sum(len(assignment.users) for assignment in assignments)
    return assignments


async def crawl_assignments(
    spool: Spool,
    client: MalClient,
    policy: CrawlPolicy,
    *,
    worker: str | None = None,
    assignment: str | None = None,
    run_id: str | None = None,
    clock: Clock = utc_now,
    progress: Progress | None = None,
    take_slot: Slot | None = None,
    batch_size: int = 128,
) -> CrawlStats:
    """On any host, without the store: take assignments from ``spool`` (only ``assignment`` when
    named) until none is left, fetch their users and publish each batch to the spool.

    ``worker`` names this process (default host and pid; a restarted worker under the same name
    resumes what it had taken). ``take_slot``, when given, is held while taking: a cross-process
    lock for object stores, where taking is no atomic rename.
    """
    worker = worker or default_worker()
    run_id = run_id or uuid.uuid4().hex
    stats = CrawlStats()
    started = time.perf_counter()
    requests_before = client.stats.as_dict()
    try:
        while (taken := await _take(spool, worker, assignment, take_slot)) is not None:
            stats.assignments += 1
            stats.users_due += len(taken.users)
            writer = SpoolWriter(spool, run_id, assignment=taken.name, worker=worker)
            crawler = ProfileCrawler(writer, client, policy, clock=clock, progress=progress, batch_size=batch_size)
            await crawler.run(taken.users, stats, force_full=taken.force_full, fetch_until=taken.fetch_until)
            await asyncio.to_thread(finish_assignment, spool, taken, worker)
            if assignment is not None:
                break
    finally:
        _count_requests(stats, client, requests_before, started)
    return stats


async def _take(spool: Spool, worker: str, name: str | None, slot: Slot | None) -> Assignment | None:
    if slot is None:
        return await asyncio.to_thread(take_assignment, spool, worker, name)
    async with slot():
        return await asyncio.to_thread(take_assignment, spool, worker, name)
