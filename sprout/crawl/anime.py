"""Refresh the metadata of shows that lists reference and the store lacks or holds stale."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from sprout.crawl.access import StoreAccess, as_access, in_session
from sprout.crawl.policy import CrawlPolicy
from sprout.crawl.stats import CrawlStats
from sprout.mal.client import MalClient
from sprout.mal.errors import AnimeNotFound, MalError
from sprout.mal.models import AnimeDetails
from sprout.store import Store

log = logging.getLogger(__name__)


async def _fetch_or_none(client: MalClient, anime_id: int) -> AnimeDetails | None:
    try:
        return await client.fetch_anime(anime_id)
    except AnimeNotFound:
        return None


async def refresh_anime(
    store: Store | StoreAccess,
    client: MalClient,
    policy: CrawlPolicy,
    stats: CrawlStats,
    *,
    now: datetime,
    limit: int = 10_000,
    batch_size: int = 100,
) -> None:
    """Fetch details for up to ``limit`` shows, most referenced first, writing each batch at once
    (in its own store session: the store is not held while fetching)."""
    access = as_access(store)
    anime_ids = await in_session(access, lambda s: s.anime_needing_refresh(now, policy.anime_max_age, limit))
    for start in range(0, len(anime_ids), batch_size):
        chunk = anime_ids[start : start + batch_size]
        fetched = await asyncio.gather(*(_fetch_or_none(client, i) for i in chunk), return_exceptions=True)
        details = [d for d in fetched if isinstance(d, AnimeDetails)]
        stats.anime_missing += sum(d is None for d in fetched)
        stats.anime_failed += sum(isinstance(d, Exception) for d in fetched)  # one bad answer, one show
        for error in fetched:
            if isinstance(error, Exception) and not isinstance(error, MalError):
                log.warning("fetching anime details failed unexpectedly", exc_info=error)
        interrupted = [d for d in fetched if isinstance(d, BaseException) and not isinstance(d, Exception)]
        if details:
            await in_session(access, lambda s, details=details: s.upsert_anime(details, now))
            stats.anime_refreshed += len(details)
        if interrupted:
            raise interrupted[0]
