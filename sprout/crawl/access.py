"""How the crawl reaches the store: in short sessions, never across a wait on the network.

A crawl spends nearly all its time waiting on MAL. Opening the DuckDB file only for each
transaction (the due-user query, each batch write, run bookkeeping) leaves it free the rest of
the time for the other stages, which DuckDB would otherwise lock out entirely.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from sprout.store import Store

T = TypeVar("T")
Slot = Callable[[], AbstractAsyncContextManager[None]]


class StoreAccess(Protocol):
    def session(self) -> AbstractAsyncContextManager[Store]:
        """The store for the length of the block."""
        ...


class HeldStore:
    """A store its caller opened and keeps open (an in-memory store, a test, an interactive run)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Store]:
        yield self.store

    def __repr__(self) -> str:
        return f"HeldStore({self.store!r})"


class StoreFile:
    """The DuckDB file at ``path``, opened for each session and closed at its end.

    ``slot``, when given, is held around each session: a cross-process lock such as the Prefect
    writer limit, so that writers take turns instead of failing to open the file.
    """

    def __init__(self, path: Path | str, *, wait_s: float = 30.0, slot: Slot | None = None) -> None:
        self.path = Path(path)
        self.wait_s = wait_s
        self._slot = slot

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Store]:
        if self._slot is None:
            async with self._open() as store:
                yield store
            return
        async with self._slot(), self._open() as store:
            yield store

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[Store]:
        store = await asyncio.to_thread(Store.open, self.path, wait_s=self.wait_s)
        try:
            yield store
        finally:
            await asyncio.to_thread(store.close)

    def __repr__(self) -> str:
        return f"StoreFile({str(self.path)!r})"


def as_access(store: Store | StoreAccess) -> StoreAccess:
    return HeldStore(store) if isinstance(store, Store) else store


async def in_session(access: StoreAccess, work: Callable[[Store], T]) -> T:
    """``work(store)`` in one session, on a worker thread so the fetchers keep running."""
    async with access.session() as store:
        return await asyncio.to_thread(work, store)
