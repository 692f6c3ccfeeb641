"""Users and their crawl state: discovery, the due queue, claims, and outcomes of fetches without a list.

A claim hands a user to one crawl worker until it runs out (``claimed_until``): the due queue
leaves claimed users out, so nobody else fetches them meanwhile. Every function runs inside the
caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import duckdb
import pyarrow as pa

from .database import UTC_TIMESTAMP, as_utc, registered, scalar, unique_rounds
from .records import DueUser, UserOutcome
from .schema import WITHDRAWN_STATES

_WITHDRAWN = ", ".join(f"'{state}'" for state in WITHDRAWN_STATES)
# A user who took their list away comes back with a full listing (their stored rows may have
# been purged, and deletions made meanwhile must be seen), so they read as never fully listed.
# So does a user whose mass deletion is held: only a full listing can confirm or settle it.
_LAST_FULL_REFRESH = (
    "CASE WHEN c.withdrawn_at IS NULL AND c.mass_deletion_held_at IS NULL THEN c.last_full_refresh_at END"
)
_UNCLAIMED = "(?::TIMESTAMPTZ IS NULL OR c.claimed_until IS NULL OR c.claimed_until <= ?)"
# Outcomes of fetches without a list, as `record_outcomes` takes them.
OUTCOME_SCHEMA = pa.schema(
    [
        ("username", pa.string()),
        ("state", pa.string()),
        ("http_status", pa.int32()),
        ("error", pa.string()),
        ("crawled_at", UTC_TIMESTAMP),
        ("next_due_at", UTC_TIMESTAMP),
    ]
)


def insert_new_users(connection: duckdb.DuckDBPyConnection, names_sql: str, source: str) -> int:
    """Add the users of ``names_sql`` (columns username, discovered_at, ord) not stored yet;
    returns how many were new. Existing users keep their discovery time and source."""
    return scalar(
        connection,
        f"""
        INSERT INTO users (username, discovered_at, source, discovery_order)
        SELECT n.username, n.discovered_at, ?, (SELECT coalesce(max(discovery_order), 0) FROM users) + n.ord
        FROM ({names_sql}) AS n
        WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.username = n.username)
        """,
        [source],
    )


def add_users(connection: duckdb.DuckDBPyConnection, usernames: Iterable[str], source: str, now: datetime) -> int:
    """Add users found by ``source`` (crawl state 'pending', due at ``now``); returns how many were
    new. Existing users are left untouched, so adding again changes nothing."""
    names = list(dict.fromkeys(usernames))  # first occurrence keeps its place in discovery order
    if any(not name or name != name.strip() for name in names):
        raise ValueError("usernames must be non-empty and carry no surrounding whitespace")
    if not names:
        return 0
    table = pa.table(
        {
            "username": pa.array(names, pa.string()),
            "discovered_at": pa.array([as_utc(now, "now")] * len(names), UTC_TIMESTAMP),
            "ord": pa.array(range(1, len(names) + 1), pa.int64()),
        }
    )
    with registered(connection, discovered_names=table):
        added = insert_new_users(connection, "SELECT * FROM discovered_names", source)
        connection.execute(
            """
            INSERT INTO crawl_state (username, state, attempts, next_due_at, entries)
            SELECT username, 'pending', 0, discovered_at, 0 FROM discovered_names
            ON CONFLICT (username) DO NOTHING
            """
        )
    return added


def due_users(
    connection: duckdb.DuckDBPyConnection, now: datetime | None, limit: int, *, unclaimed_at: datetime | None = None
) -> list[DueUser]:
    """Users due by ``now`` (every user when ``now`` is None): never-crawled ones first in
    discovery order, then the stalest first. A NULL ``next_due_at`` (a row written by hand)
    counts as due. Users claimed past ``unclaimed_at`` (default ``now``) are left out."""
    due_by = None if now is None else as_utc(now, "now")
    free_at = due_by if unclaimed_at is None else as_utc(unclaimed_at, "unclaimed_at")
    rows = connection.execute(
        f"""
        SELECT c.username, c.state, c.high_water_mark, {_LAST_FULL_REFRESH}, c.attempts
        FROM crawl_state c LEFT JOIN users u USING (username)
        WHERE (?::TIMESTAMPTZ IS NULL OR c.next_due_at IS NULL OR c.next_due_at <= ?) AND {_UNCLAIMED}
        ORDER BY (c.state = 'pending' AND c.last_crawl_at IS NULL) DESC,
                 c.last_crawl_at NULLS FIRST,
                 u.discovered_at NULLS LAST, u.discovery_order NULLS LAST, c.username
        LIMIT ?
        """,
        [due_by, due_by, free_at, free_at, max(int(limit), 0)],
    ).fetchall()
    return [DueUser(*row) for row in rows]


def user_states(
    connection: duckdb.DuckDBPyConnection, usernames: Iterable[str], *, unclaimed_at: datetime | None = None
) -> list[DueUser]:
    """The crawl state of the named users, in the order given (unknown names are left out, and
    with ``unclaimed_at`` so are users claimed past it)."""
    names = list(dict.fromkeys(usernames))
    free_at = None if unclaimed_at is None else as_utc(unclaimed_at, "unclaimed_at")
    rows = connection.execute(
        f"""
        SELECT c.username, c.state, c.high_water_mark, {_LAST_FULL_REFRESH}, c.attempts
        FROM crawl_state c WHERE c.username IN (SELECT unnest(?)) AND {_UNCLAIMED}
        """,
        [names, free_at, free_at],
    ).fetchall()
    found = {row[0]: DueUser(*row) for row in rows}
    return [found[name] for name in names if name in found]


def claim_users(
    connection: duckdb.DuckDBPyConnection, usernames: Iterable[str], claimed_by: str, until: datetime
) -> int:
    """Claim the named users for ``claimed_by`` until ``until``; returns how many were claimed."""
    return scalar(
        connection,
        "UPDATE crawl_state SET claimed_by = ?, claimed_until = ? WHERE username IN (SELECT unnest(?))",
        [claimed_by, as_utc(until, "until"), list(usernames)],
    )


def release_claims(connection: duckdb.DuckDBPyConnection, usernames: Iterable[str], claimed_by: str) -> int:
    """End ``claimed_by``'s claims on the named users (a claim since taken by another stays)."""
    return scalar(
        connection,
        """
        UPDATE crawl_state SET claimed_by = NULL, claimed_until = NULL
        WHERE claimed_by = ? AND username IN (SELECT unnest(?))
        """,
        [claimed_by, list(usernames)],
    )


def outcomes_table(outcomes: list[UserOutcome]) -> pa.Table:
    """``outcomes`` as an `OUTCOME_SCHEMA` table."""
    return pa.table(
        {
            "username": pa.array([o.username for o in outcomes], pa.string()),
            "state": pa.array([o.state for o in outcomes], pa.string()),
            "http_status": pa.array([o.http_status for o in outcomes], pa.int32()),
            "error": pa.array([o.error for o in outcomes], pa.string()),
            "crawled_at": pa.array([as_utc(o.at, "at") for o in outcomes], UTC_TIMESTAMP),
            "next_due_at": pa.array([as_utc(o.next_due_at, "next_due_at") for o in outcomes], UTC_TIMESTAMP),
        },
        schema=OUTCOME_SCHEMA,
    )


def mark_users(connection: duckdb.DuckDBPyConnection, outcomes: list[UserOutcome]) -> None:
    """Record fetches that brought no list. Stored entries are kept: a private or failing user
    keeps their last good data until `sprout.store.retention` purges it. 'error' counts one more
    consecutive failure; any other outcome (including 'pending', a throttled fetch that is not the
    user's fault) resets the count.

    ``withdrawn_at`` is when the user first answered private or not found: kept while they stay
    unreachable ('error' says nothing new), cleared by 'ok'. A 'pending' (throttled) outcome clears
    it only when the last crawl was the one that set it: that verdict may have been the throttling
    itself, while an older one was confirmed by an earlier crawl."""
    for batch in unique_rounds(outcomes, key=lambda outcome: outcome.username):
        record_outcomes(connection, outcomes_table(batch))


def record_outcomes(connection: duckdb.DuckDBPyConnection, outcomes: pa.Table) -> None:
    """`mark_users` for an `OUTCOME_SCHEMA` table with one row per username."""
    if not outcomes.num_rows:
        return
    table = outcomes.select(OUTCOME_SCHEMA.names).append_column(
        "ord", pa.array(range(1, outcomes.num_rows + 1), pa.int64())
    )
    with registered(connection, outcomes=table):
        insert_new_users(connection, "SELECT username, crawled_at AS discovered_at, ord FROM outcomes", "crawl")
        connection.execute(
            f"""
            INSERT INTO crawl_state (username, state, http_status, attempts, last_crawl_at, next_due_at,
                                     last_error, entries, withdrawn_at)
            SELECT username, state, http_status, CASE WHEN state = 'error' THEN 1 ELSE 0 END, crawled_at,
                   next_due_at, error, 0, CASE WHEN state IN ({_WITHDRAWN}) THEN crawled_at END
            FROM outcomes
            ON CONFLICT (username) DO UPDATE SET
                withdrawn_at = CASE
                    WHEN excluded.state IN ({_WITHDRAWN}) THEN coalesce(withdrawn_at, excluded.withdrawn_at)
                    WHEN excluded.state = 'ok' THEN NULL
                    WHEN excluded.state = 'pending' AND withdrawn_at = last_crawl_at THEN NULL
                    ELSE withdrawn_at
                END,
                state = excluded.state,
                http_status = excluded.http_status,
                last_error = excluded.last_error,
                last_crawl_at = excluded.last_crawl_at,
                next_due_at = excluded.next_due_at,
                attempts = CASE WHEN excluded.state = 'error' THEN attempts + 1 ELSE 0 END
            """
        )
