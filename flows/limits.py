"""Prefect global limits shared by every worker: the MAL request budget, the DuckDB writer, and
taking assignments from the crawl spool."""

from __future__ import annotations

import asyncio
import math
from contextlib import asynccontextmanager, contextmanager
from typing import AsyncIterator, Iterator

from prefect import get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.asyncio import concurrency, rate_limit
from prefect.concurrency.sync import concurrency as sync_concurrency

MAL_RATE_LIMIT = "sprout-mal-requests"
DUCKDB_WRITER_LIMIT = "sprout-duckdb-writer"
SPOOL_TAKE_LIMIT = "sprout-spool-take"
# A writer killed with SIGKILL blocks the next one until its lease runs out: keep it short
# (the holder renews it while alive).
DUCKDB_WRITER_LEASE_S = 60.0


class PrefectRateLimiter:
    """A ``RequestLimiter`` spending one slot of a Prefect global rate limit per request.

    Every process that crawls shares the one budget, so adding workers never raises the rate.
    Each server round trip takes ``slots_per_call`` slots and hands them out locally, so a high
    budget does not turn into one API call per request (at 1 request/s it is one slot a call).
    """

    def __init__(self, name: str = MAL_RATE_LIMIT, requests_per_second: float = 1.0) -> None:
        self.name = name
        self.slots_per_call = max(1, int(requests_per_second // 10))
        self._prepaid = 0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            if self._prepaid == 0:
                await rate_limit(self.name, occupy=self.slots_per_call, strict=True)
                self._prepaid = self.slots_per_call
            self._prepaid -= 1


@task(cache_policy=NO_CACHE)
async def ensure_limits(requests_per_second: float) -> None:
    """Create (or resize) the limits: ``rate_limit`` would silently skip a missing one."""
    async with get_client() as client:
        await client.upsert_global_concurrency_limit_by_name(
            MAL_RATE_LIMIT, limit=max(1, math.ceil(requests_per_second)), slot_decay_per_second=requests_per_second
        )
        await client.upsert_global_concurrency_limit_by_name(DUCKDB_WRITER_LIMIT, limit=1)
        await client.upsert_global_concurrency_limit_by_name(SPOOL_TAKE_LIMIT, limit=1)


@asynccontextmanager
async def duckdb_writer() -> AsyncIterator[None]:
    """Hold the one DuckDB writer slot; a second writer waits here instead of failing to open."""
    async with concurrency(DUCKDB_WRITER_LIMIT, occupy=1, strict=True, lease_duration=DUCKDB_WRITER_LEASE_S):
        yield


@asynccontextmanager
async def spool_take() -> AsyncIterator[None]:
    """One crawl worker at a time takes an assignment: on an object store taking is a copy and a
    delete, not an atomic rename, so two workers could otherwise take the same one."""
    async with concurrency(SPOOL_TAKE_LIMIT, occupy=1, strict=True, lease_duration=DUCKDB_WRITER_LEASE_S):
        yield


@contextmanager
def duckdb_access() -> Iterator[None]:
    """`duckdb_writer` for synchronous flows; creates the limit first when it is missing.

    Reading needs the slot too: while one process holds the file read-write, DuckDB lets no
    other process open it at all.
    """
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(DUCKDB_WRITER_LIMIT, limit=1)
    with sync_concurrency(DUCKDB_WRITER_LIMIT, occupy=1, strict=True, lease_duration=DUCKDB_WRITER_LEASE_S):
        yield
