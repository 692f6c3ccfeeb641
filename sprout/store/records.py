"""Plain records going in and out of the store (no behaviour beyond checking their own fields)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from sprout.mal.models import ListEntry

from .schema import CRAWL_STATES

CrawlStateName = Literal["pending", "ok", "private", "not_found", "error"]
# Outcomes other than a successful list fetch; 'ok' only comes with the list itself.
OUTCOME_STATES = tuple(state for state in CRAWL_STATES if state != "ok")


@dataclass(frozen=True, slots=True)
class DueUser:
    """A user whose list should be fetched now, with what the crawler needs to fetch it well."""

    username: str
    state: CrawlStateName
    high_water_mark: datetime | None  # newest updated_at stored: incremental fetches stop there
    last_full_refresh_at: datetime | None  # a periodic full fetch is what catches deletions
    attempts: int  # consecutive failures, for backoff


@dataclass(frozen=True, slots=True)
class UserListWrite:
    """One fetched list. ``full`` means ``entries`` is the whole list (rows not in it are deleted)."""

    username: str
    entries: list[ListEntry]
    full: bool
    fetched_at: datetime
    next_due_at: datetime


@dataclass(frozen=True, slots=True)
class ChangeCounts:
    """What one write did to the stored list: rows added, rows whose fields changed, rows deleted."""

    added: int = 0
    changed: int = 0
    deleted: int = 0

    @property
    def total(self) -> int:
        return self.added + self.changed + self.deleted


@dataclass(frozen=True, slots=True)
class UserOutcome:
    """A fetch that brought no list: private (403), not_found (404), error, or pending (throttled)."""

    username: str
    state: CrawlStateName
    http_status: int | None
    error: str | None
    at: datetime
    next_due_at: datetime

    def __post_init__(self) -> None:
        if self.state not in OUTCOME_STATES:
            raise ValueError(f"outcome state must be one of {OUTCOME_STATES}, got {self.state!r}")


@dataclass(frozen=True, slots=True)
class CrawlRun:
    run_id: str
    started_at: datetime
    finished_at: datetime | None
    status: str
    params: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
