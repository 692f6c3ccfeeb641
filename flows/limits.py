"""Prefect global limits shared by every worker: the MAL request budget and the DuckDB writer."""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from typing import AsyncIterator

from prefect import get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.asyncio import concurrency, rate_limit

MAL_RATE_LIMIT = "sprout-mal-requests"
DUCKDB_WRITER_LIMIT = "sprout-duckdb-writer"
# A writer killed with SIGKILL blocks the next one until its lease runs out: keep it short
# (the holder renews it while alive).
DUCKDB_WRITER_LEASE_S = 60.0


class PrefectRateLimiter:
    """A ``RequestLimiter`` spending one slot of a Prefect global rate limit per request.

    Every process that crawls shares the one budget, so adding workers never raises the rate.
    """

    def __init__(self, name: str = MAL_RATE_LIMIT) -> None:
        self.name = name

    async def acquire(self) -> None:
        await rate_limit(self.name, strict=True)


@task(cache_policy=NO_CACHE)
async def ensure_limits(requests_per_second: float) -> None:
    """Create (or resize) the limits: ``rate_limit`` would silently skip a missing one."""
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(
            MAL_RATE_LIMIT, limit=max(1, math.ceil(requests_per_second)), slot_decay_per_second=requests_per_second
        )
        await client.upsert_global_concurrency_limit_by_name(DUCKDB_WRITER_LIMIT, limit=1)


@asynccontextmanager
async def duckdb_writer() -> AsyncIterator[None]:
    """Hold the one DuckDB writer slot; a second writer waits here instead of failing to open."""
    async with concurrency(DUCKDB_WRITER_LIMIT, occupy=1, strict=True, lease_duration=DUCKDB_WRITER_LEASE_S):
        yield
