"""`Store`: the platform's DuckDB database behind one object.

Each method is one transaction, so a failure leaves the file as it was. Times are passed in
(timezone-aware), never read from the clock here, which keeps callers and tests deterministic.
One Store holds one connection; a lock serialises its use across threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from sprout.mal.models import AnimeDetails, ListEntry

from . import anime, crawl_state, entries, health_checks, importer, model_events, runs
from .database import IN_MEMORY, SchemaError, as_utc, connect, transaction
from .health_checks import HealthCheckRow
from .model_events import ModelEvent
from .records import ChangeCounts, CrawlRun, DueUser, UserListWrite, UserOutcome
from .schema import CRAWL_STATES, LATEST_VERSION, check_version, migrate, schema_version


class Store:
    """Users, crawl state, list entries, anime metadata, crawl runs and model events in one DuckDB file."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, path: Path | str, *, read_only: bool) -> None:
        self._connection = connection
        self.path = path if str(path) == IN_MEMORY else Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: Path | str, *, read_only: bool = False, wait_s: float = 0.0) -> Store:
        """Open (creating it and its folder when needed) and bring the schema up to date.

        Raises `StoreLocked` when another process holds the file (after retrying for ``wait_s``
        seconds), `NotADatabase` for a file DuckDB cannot read, and `SchemaError` for a file
        from newer code, or an older file opened read-only (it cannot be upgraded then).
        """
        connection = connect(path, read_only=read_only, wait_s=wait_s)
        try:
            if read_only:
                version = schema_version(connection)
                check_version(version, str(path))
                if version < LATEST_VERSION:
                    raise SchemaError(
                        f"{path}: schema version {version} is older than {LATEST_VERSION}; "
                        "open it once read-write to upgrade it"
                    )
            else:
                migrate(connection, where=str(path))
        except BaseException:
            connection.close()
            raise
        return cls(connection, path, read_only=read_only)

    def close(self) -> None:
        with self._lock:
            self._connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, read_only={self.read_only})"

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The raw connection, for read-only SQL by other stages (writes go through methods)."""
        return self._connection

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection inside one transaction: everything in the block commits or none of it."""
        with self._lock, transaction(self._connection) as connection:
            yield connection

    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self._connection)

    # Users and crawl state

    def add_users(self, usernames: Iterable[str], source: str, now: datetime) -> int:
        """Add discovered users (state 'pending', due now); returns how many were new."""
        with self.transaction() as connection:
            return crawl_state.add_users(connection, usernames, source, now)

    def due_users(self, now: datetime | None, limit: int, *, unclaimed_at: datetime | None = None) -> list[DueUser]:
        """Up to ``limit`` users due by ``now`` (None: all, ignoring the schedule):
        never-crawled first in discovery order, then the stalest. Users claimed by a crawl
        worker past ``unclaimed_at`` (default ``now``) are left out."""
        with self.transaction() as connection:
            return crawl_state.due_users(connection, now, limit, unclaimed_at=unclaimed_at)

    def user_states(self, usernames: Iterable[str], *, unclaimed_at: datetime | None = None) -> list[DueUser]:
        """The crawl state of the named users, in the order given (unknown names left out, and
        with ``unclaimed_at`` so are users claimed past it)."""
        with self.transaction() as connection:
            return crawl_state.user_states(connection, usernames, unclaimed_at=unclaimed_at)

    def mark_users(self, outcomes: list[UserOutcome]) -> None:
        """Record fetches that brought no list; stored entries stay."""
        with self.transaction() as connection:
            crawl_state.mark_users(connection, outcomes)

    # List entries

    def write_user_lists(self, writes: list[UserListWrite]) -> list[ChangeCounts]:
        """Store fetched lists, all in one transaction; one `ChangeCounts` per write."""
        if not writes:
            return []
        with self.transaction() as connection:
            return entries.write_user_lists(connection, writes)

    def user_entries(self, username: str) -> list[ListEntry]:
        with self.transaction() as connection:
            return entries.user_entries(connection, username)

    # Anime metadata

    def upsert_anime(self, details: list[AnimeDetails], fetched_at: datetime) -> int:
        with self.transaction() as connection:
            return anime.upsert_anime(connection, details, fetched_at)

    def anime_needing_refresh(self, now: datetime, max_age: timedelta, limit: int) -> list[int]:
        with self.transaction() as connection:
            return anime.anime_needing_refresh(connection, now, max_age, limit)

    # Crawl runs

    def start_crawl_run(self, run_id: str, started_at: datetime, params: dict[str, Any]) -> None:
        with self.transaction() as connection:
            runs.start_crawl_run(connection, run_id, started_at, params)

    def finish_crawl_run(self, run_id: str, finished_at: datetime, status: str, stats: dict[str, Any]) -> None:
        with self.transaction() as connection:
            runs.finish_crawl_run(connection, run_id, finished_at, status, stats)

    def last_crawl_run(self, status: str | None = None) -> CrawlRun | None:
        with self.transaction() as connection:
            return runs.last_crawl_run(connection, status)

    def profiles_changed_since(self, since: datetime | None) -> int:
        with self.transaction() as connection:
            return runs.profiles_changed_since(connection, None if since is None else as_utc(since, "since"))

    # Model events

    def record_model_event(
        self,
        kind: str,
        model_version: str | None,
        *,
        at: datetime,
        from_stage: str | None = None,
        to_stage: str | None = None,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
        event_id: str | None = None,
    ) -> str:
        """Append a registry or gate event (see `sprout.store.model_events`); returns its id."""
        with self.transaction() as connection:
            return model_events.record_model_event(
                connection,
                kind,
                model_version,
                at=at,
                from_stage=from_stage,
                to_stage=to_stage,
                reason=reason,
                details=details,
                event_id=event_id,
            )

    def record_model_events(self, events: list[dict[str, Any]]) -> None:
        """Record a batch of events (each a `record_model_event` keyword set with ``event_id``; ``at``
        a datetime or ISO string) in one transaction; ids already recorded are skipped."""
        with self.transaction() as connection:
            for event in events:
                fields = dict(event)
                at = fields.pop("at")
                at = datetime.fromisoformat(at) if isinstance(at, str) else at
                model_events.record_model_event(connection, fields.pop("kind"), fields.pop("model_version"),
                                                at=at, **fields)

    def model_events(self, limit: int | None = None, model_version: str | None = None) -> list[ModelEvent]:
        """Model events newest first, optionally for one version only."""
        with self.transaction() as connection:
            return model_events.model_events(connection, limit, model_version)

    # Model health checks

    def record_health_check(self, row: HealthCheckRow) -> None:
        """Append one model health check (see `sprout.store.health_checks`); a retry records it once."""
        with self.transaction() as connection:
            health_checks.record_health_check(connection, row)

    def health_checks(self, limit: int | None = None, model_version: str | None = None) -> list[HealthCheckRow]:
        """Model health checks newest first, optionally of one version only."""
        with self.transaction() as connection:
            return health_checks.health_checks(connection, limit, model_version)

    # Whole-store

    def import_anime5k(
        self, directory: Path | str, *, updated_at: datetime = importer.PUBLISHED_AT, now: datetime
    ) -> dict[str, int]:
        """See `sprout.store.importer.import_anime5k`."""
        return importer.import_anime5k(self, directory, updated_at=updated_at, now=now)

    def counts(self) -> dict[str, Any]:
        """Row counts: users, list_entries, anime, anime_relations, crawl_runs, and
        ``crawl_state`` as {state: users} with every state present."""
        with self.transaction() as connection:
            totals = connection.execute(
                """
                SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM list_entries),
                       (SELECT count(*) FROM anime), (SELECT count(*) FROM anime_relations),
                       (SELECT count(*) FROM crawl_runs)
                """
            ).fetchall()[0]
            states = dict(connection.execute("SELECT state, count(*) FROM crawl_state GROUP BY state").fetchall())
        names = ("users", "list_entries", "anime", "anime_relations", "crawl_runs")
        return {
            **dict(zip(names, totals)),
            "crawl_state": {state: states.get(state, 0) for state in CRAWL_STATES},
        }
