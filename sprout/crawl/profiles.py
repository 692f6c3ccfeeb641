"""Fetch due users' lists concurrently and hand them to a writer in batches.

Fetchers run concurrently (the client bounds requests in flight and the rate); one loop drains
their results into batches (`batch.ListBatch`) for the writer: the store itself
(`ingest.StoreWriter`: each batch one transaction in a short store session, the file not held
while fetching) or the spool (`spool.SpoolWriter`: each batch one published file, applied later
by the store's host). A run killed at any point loses only fetched-but-unwritten lists, whose
users stay due and are fetched again on resume.

Whatever goes wrong with one user (an error of any kind while fetching, a list the store refuses)
is that user's outcome, with backoff; only a store that cannot be written at all fails the run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sprout.crawl.access import StoreAccess
from sprout.crawl.batch import BatchResult, ListBatch
from sprout.crawl.ingest import StoreWriter
from sprout.crawl.policy import CrawlPolicy, failure_outcome, plan_fetch
from sprout.crawl.stats import CrawlStats
from sprout.mal.client import MalClient
from sprout.mal.errors import MalError, Throttled
from sprout.store import DueUser, Store, UserListWrite, UserOutcome

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Fetched:
    write: UserListWrite


class BatchWriter(Protocol):
    async def write(self, batch: ListBatch) -> BatchResult:
        """Store or publish ``batch``; what became of it."""
        ...


class ProfileCrawler:
    """Crawls a list of due users into the store (given a `Store` or `StoreAccess`) or another
    `BatchWriter`; reuse one per run."""

    def __init__(
        self,
        target: Store | StoreAccess | BatchWriter,
        client: MalClient,
        policy: CrawlPolicy,
        *,
        clock: Clock,
        workers: int = 8,
        batch_size: int = 128,
        progress: Progress | None = None,
    ) -> None:
        direct = isinstance(target, Store) or hasattr(target, "session")  # a store, or access to one
        self.writer: BatchWriter = StoreWriter(target, policy) if direct else target
        self.client = client
        self.policy = policy
        self.clock = clock
        self.workers = workers
        self.batch_size = batch_size
        self.progress = progress
        # username -> final state of this run ("ok", "private", "not_found", "error", "throttled")
        self.outcomes: dict[str, str] = {}
        self._due: dict[str, DueUser] = {}

    async def run(
        self, due: Sequence[DueUser], stats: CrawlStats, *, force_full: bool = False, fetch_until: datetime | None = None
    ) -> None:
        """Fetch ``due`` and write what comes back; users not started by ``fetch_until`` (when
        their claim runs out) are left for a later crawl."""
        by_name = {d.username: d for d in due}
        self._due.update(by_name)
        pending: asyncio.Queue[DueUser] = asyncio.Queue()
        for user in due:
            pending.put_nowait(user)
        results: asyncio.Queue[_Fetched | UserOutcome | None] = asyncio.Queue()

        async def fetcher() -> None:
            while True:
                try:
                    user = pending.get_nowait()
                except asyncio.QueueEmpty:
                    return
                if fetch_until is not None and self.clock() >= fetch_until:
                    stats.users_claim_expired += 1
                    continue
                for result in await self._fetch_one(user, by_name, stats, force_full):
                    results.put_nowait(result)

        async def writer() -> None:
            writes: list[UserListWrite] = []
            marks: dict[str, UserOutcome] = {}
            done = 0
            while True:
                item = await results.get()
                if item is None:
                    break
                if isinstance(item, _Fetched):
                    writes.append(item.write)
                    done += 1
                else:
                    marks[item.username] = item  # a later outcome (throttled) replaces an earlier one
                    done += item.state != "pending"
                if len(writes) + len(marks) >= self.batch_size or results.empty():
                    await self._flush(writes, marks, stats)
                    writes, marks = [], {}
                if self.progress:
                    self.progress(min(done, len(due)), len(due))
            await self._flush(writes, marks, stats)

        writer_task = asyncio.create_task(writer())
        try:
            await asyncio.gather(*(fetcher() for _ in range(max(1, min(self.workers, len(due))))))
        finally:
            await results.put(None)
            await writer_task
        self._count_outcomes(stats)

    async def _fetch_one(
        self, user: DueUser, by_name: dict[str, DueUser], stats: CrawlStats, force_full: bool
    ) -> list[_Fetched | UserOutcome]:
        now = self.clock()
        plan = plan_fetch(user.username, user.high_water_mark, user.last_full_refresh_at, now, self.policy, force_full)
        try:
            listing = await self.client.fetch_animelist(user.username, since=plan.since)
        except Throttled as throttled:
            # Every user of the 403 streak is retried after the pause instead of being marked private.
            # Their earlier "private" outcomes are already queued, so these replace them.
            retry_at = now + timedelta(seconds=self.client.paused_for_s)
            names = dict.fromkeys([*throttled.usernames, user.username])
            for name in names:
                self.outcomes[name] = "throttled"
            return [UserOutcome(name, "pending", 403, "throttled", now, retry_at) for name in names]
        except Exception as error:  # any failure is this user's, never the run's
            if not isinstance(error, MalError):
                log.warning("fetching %s failed unexpectedly", user.username, exc_info=True)
            outcome = failure_outcome(error, by_name.get(user.username, user), now, self.policy)
            self.outcomes[user.username] = outcome.state
            return [outcome]
        self.outcomes[user.username] = "ok"
        stats.entries_skipped += listing.skipped
        if plan.full:
            stats.full_listings += 1
        else:
            stats.incremental_listings += 1
        stats.entries_fetched += len(listing.entries)
        fetched_at = self.clock()
        write = UserListWrite(
            username=user.username,
            entries=listing.entries,
            full=listing.complete,
            fetched_at=fetched_at,
            next_due_at=fetched_at + self.policy.recrawl_every,
        )
        return [_Fetched(write)]

    async def _flush(self, writes: list[UserListWrite], marks: dict[str, UserOutcome], stats: CrawlStats) -> None:
        if not writes and not marks:
            return
        result = await self.writer.write(self._batch(writes, marks))
        for change in result.changes:
            stats.entries_added += change.counts.added
            stats.entries_changed += change.counts.changed
            stats.entries_deleted += change.counts.deleted
            stats.profiles_changed += bool(change.counts.total)
            stats.users_deletions_held += bool(change.held)
            stats.entries_deletions_held += change.held
        for username in result.refused:
            self.outcomes[username] = "error"
        stats.batches_spooled += result.published is not None

    def _batch(self, writes: list[UserListWrite], marks: dict[str, UserOutcome]) -> ListBatch:
        """The flush as a batch; a list that does not fit the store's types (an id beyond 32
        bits, say) becomes its user's error instead of failing the others."""
        try:
            return ListBatch.from_records(writes, marks.values())
        except Exception:  # find the list(s) at fault below
            log.warning("a batch of %d lists does not convert; converting them one by one", len(writes), exc_info=True)
        kept = []
        for write in writes:
            try:
                ListBatch.from_records([write])
            except Exception as error:  # recorded as this user's error
                due = self._due.get(write.username) or DueUser(write.username, "pending", None, None, 0)
                marks[write.username] = failure_outcome(error, due, write.fetched_at, self.policy)
                self.outcomes[write.username] = "error"
            else:
                kept.append(write)
        return ListBatch.from_records(kept, marks.values())

    def _count_outcomes(self, stats: CrawlStats) -> None:
        for state in self.outcomes.values():
            if state == "ok":
                stats.users_ok += 1
            elif state == "private":
                stats.users_private += 1
            elif state == "not_found":
                stats.users_not_found += 1
            elif state == "throttled":
                stats.users_throttled += 1
            else:
                stats.users_failed += 1
