"""Fetch due users' lists concurrently and write them in batched transactions.

Fetchers run concurrently (the client bounds requests in flight and the rate); one writer drains
their results into the store in batches, each batch one transaction. A run killed at any point
loses only fetched-but-unwritten lists, whose users stay due and are fetched again on resume.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sprout.crawl.policy import CrawlPolicy, error_retry_at, plan_fetch
from sprout.crawl.stats import CrawlStats
from sprout.mal.client import MalClient
from sprout.mal.errors import MalError, PrivateList, Throttled, UserNotFound
from sprout.store import DueUser, Store, UserListWrite, UserOutcome

Clock = Callable[[], datetime]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class _Fetched:
    write: UserListWrite


def _failure_outcome(error: Exception, due: DueUser, now: datetime, policy: CrawlPolicy) -> UserOutcome:
    if isinstance(error, UserNotFound):
        return UserOutcome(due.username, "not_found", 404, None, now, now + policy.not_found_recheck_after)
    if isinstance(error, PrivateList):
        return UserOutcome(due.username, "private", 403, None, now, now + policy.private_recheck_after)
    status = getattr(error, "last_status", None) or getattr(error, "status", None)
    retry_at = error_retry_at(now, due.attempts + 1, policy)
    return UserOutcome(due.username, "error", status, str(error)[:500], now, retry_at)


class ProfileCrawler:
    """Crawls a list of due users into the store; reuse one per run."""

    def __init__(
        self,
        store: Store,
        client: MalClient,
        policy: CrawlPolicy,
        *,
        clock: Clock,
        workers: int = 8,
        batch_size: int = 128,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.policy = policy
        self.clock = clock
        self.workers = workers
        self.batch_size = batch_size
        self.progress = progress
        # username -> final state of this run ("ok", "private", "not_found", "error", "throttled")
        self.outcomes: dict[str, str] = {}

    async def run(self, due: Sequence[DueUser], stats: CrawlStats, *, force_full: bool = False) -> None:
        by_name = {d.username: d for d in due}
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
        except MalError as error:
            outcome = _failure_outcome(error, by_name.get(user.username, user), now, self.policy)
            self.outcomes[user.username] = outcome.state
            return [outcome]
        self.outcomes[user.username] = "ok"
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
        if writes:
            changes = await asyncio.to_thread(self.store.write_user_lists, writes)
            for change in changes:
                stats.entries_added += change.added
                stats.entries_changed += change.changed
                stats.entries_deleted += change.deleted
                stats.profiles_changed += bool(change.added or change.changed or change.deleted)
        if marks:
            await asyncio.to_thread(self.store.mark_users, list(marks.values()))

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
