"""When each user is crawled next, how, and what a failed fetch records: pure rules, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from sprout.mal.errors import MalError, PrivateList, UserNotFound
from sprout.store.diff import DeletionGuard
from sprout.store.records import DueUser, UserOutcome

if TYPE_CHECKING:
    from sprout.config import Settings


class CrawlPolicy(BaseModel):
    """Timing rules of the crawl (every duration is configurable) and its mass-deletion guard."""

    recrawl_every: timedelta = Field(timedelta(days=1), description="How soon a crawled user is due again.")
    full_refresh_every: timedelta = Field(
        timedelta(days=7), description="How often a user's whole list is listed to catch deletions."
    )
    private_recheck_after: timedelta = Field(timedelta(days=14), description="When a private list is asked again.")
    not_found_recheck_after: timedelta = Field(timedelta(days=60), description="When a missing user is asked again.")
    error_backoff_first: timedelta = Field(timedelta(hours=1), description="Delay after a first failed crawl.")
    error_backoff_max: timedelta = Field(timedelta(days=7), description="Longest delay after repeated failures.")
    anime_max_age: timedelta = Field(timedelta(days=30), description="Anime metadata older than this is refreshed.")
    mass_deletion_min_entries: int = Field(
        50, ge=1, description="Stored lists at least this long are guarded against mass deletion by one listing "
        "(a listing that would delete a whole list, of any length, always waits for a later one to agree).",
    )
    mass_deletion_fraction: float = Field(
        0.5, gt=0, le=1, description="A full listing deleting more than this share waits for a later one to agree."
    )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> CrawlPolicy:
        """The policy with the guard thresholds of ``settings`` (timing rules keep their defaults)."""
        fields = {
            "mass_deletion_min_entries": settings.crawl_mass_deletion_min_entries,
            "mass_deletion_fraction": settings.crawl_mass_deletion_fraction,
        }
        return cls(**{**fields, **overrides})

    def deletion_guard(self) -> DeletionGuard:
        return DeletionGuard(self.mass_deletion_min_entries, self.mass_deletion_fraction)


@dataclass(frozen=True)
class FetchPlan:
    """How one due user is fetched: ``since`` None means the whole list."""

    username: str
    since: datetime | None

    @property
    def full(self) -> bool:
        return self.since is None


def plan_fetch(
    username: str,
    high_water_mark: datetime | None,
    last_full_refresh_at: datetime | None,
    now: datetime,
    policy: CrawlPolicy,
    force_full: bool = False,
) -> FetchPlan:
    """Incremental from the high-water mark, unless a full listing is due (first crawl or periodic)."""
    full_due = last_full_refresh_at is None or now - last_full_refresh_at >= policy.full_refresh_every
    if force_full or full_due or high_water_mark is None:
        return FetchPlan(username, None)
    return FetchPlan(username, high_water_mark)


def error_retry_at(now: datetime, failed_attempts: int, policy: CrawlPolicy) -> datetime:
    """Exponential backoff across crawl runs: 1 h, 2 h, 4 h, ... capped (``failed_attempts`` ≥ 1)."""
    exponent = max(failed_attempts - 1, 0)
    delay = policy.error_backoff_first * (2 ** min(exponent, 20))
    return now + min(delay, policy.error_backoff_max)


def failure_outcome(error: BaseException, due: DueUser, now: datetime, policy: CrawlPolicy) -> UserOutcome:
    """What a fetch (or a list the store refused) that failed with ``error`` records for ``due``:
    private and not found are rechecked after their own delays, anything else backs off."""
    if isinstance(error, UserNotFound):
        return UserOutcome(due.username, "not_found", 404, None, now, now + policy.not_found_recheck_after)
    if isinstance(error, PrivateList):
        return UserOutcome(due.username, "private", 403, None, now, now + policy.private_recheck_after)
    status = getattr(error, "last_status", None) or getattr(error, "status", None)
    status = status if isinstance(status, int) else None
    retry_at = error_retry_at(now, due.attempts + 1, policy)
    message = str(error) if isinstance(error, MalError) else f"{type(error).__name__}: {error}"
    return UserOutcome(due.username, "error", status, message[:500], now, retry_at)
