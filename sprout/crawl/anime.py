"""Refresh the metadata of shows that lists reference and the store lacks or holds stale."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sprout.crawl.policy import CrawlPolicy
from sprout.crawl.stats import CrawlStats
from sprout.mal.client import MalClient
from sprout.mal.errors import AnimeNotFound, MalError
from sprout.mal.models import AnimeDetails
from sprout.store import Store


async def _fetch_or_none(client: MalClient, anime_id: int) -> AnimeDetails | None:
    try:
        return await client.fetch_anime(anime_id)
    except AnimeNotFound:
        return None


async def refresh_anime(
    store: Store,
    client: MalClient,
    policy: CrawlPolicy,
    stats: CrawlStats,
    *,
    now: datetime,
    limit: int = 10_000,
    batch_size: int = 100,
) -> None:
    """Fetch details for up to ``limit`` shows, most referenced first, writing each batch at once."""
    anime_ids = await asyncio.to_thread(store.anime_needing_refresh, now, policy.anime_max_age, limit)
    for start in range(0, len(anime_ids), batch_size):
        chunk = anime_ids[start : start + batch_size]
        fetched = await asyncio.gather(*(_fetch_or_none(client, i) for i in chunk), return_exceptions=True)
        details = [d for d in fetched if isinstance(d, AnimeDetails)]
        stats.anime_missing += sum(d is None for d in fetched)
        stats.anime_failed += sum(isinstance(d, MalError) for d in fetched)
        unexpected = [d for d in fetched if isinstance(d, BaseException) and not isinstance(d, MalError)]
        if details:
            await asyncio.to_thread(store.upsert_anime, details, now)
            stats.anime_refreshed += len(details)
        if unexpected:
            raise unexpected[0]
