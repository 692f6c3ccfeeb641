"""The store's schema as an append-only list of migrations, applied in order at open.

Operators query these tables with SQL, so table and column names are part of the interface.
Never edit a migration that has shipped: append a new one (files in the field are at every
version, and `migrate` replays only what each file lacks).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from .database import SchemaError, scalar, transaction

LIST_STATUSES = ("watching", "completed", "on_hold", "dropped", "plan_to_watch")
CRAWL_STATES = ("pending", "ok", "private", "not_found", "error")
WITHDRAWN_STATES = ("private", "not_found")  # the user took their list away from us
MODEL_EVENT_KINDS = ("registered", "evaluated", "gate", "promoted", "archived", "rolled_back")


def _quoted(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "users, crawl state and list entries",
        (
            """
            CREATE TABLE users (
                username VARCHAR PRIMARY KEY,
                discovered_at TIMESTAMPTZ NOT NULL,
                source VARCHAR NOT NULL,
                discovery_order BIGINT  -- ties of discovered_at keep the order names were found in
            )
            """,
            f"""
            CREATE TABLE crawl_state (
                username VARCHAR PRIMARY KEY,
                state VARCHAR NOT NULL CHECK (state IN ({_quoted(CRAWL_STATES)})),
                http_status INTEGER,
                attempts INTEGER NOT NULL DEFAULT 0,  -- consecutive failed attempts
                last_crawl_at TIMESTAMPTZ,
                next_due_at TIMESTAMPTZ,
                high_water_mark TIMESTAMPTZ,  -- newest list updated_at seen
                last_full_refresh_at TIMESTAMPTZ,
                last_error VARCHAR,
                entries INTEGER NOT NULL DEFAULT 0
            )
            """,
            f"""
            CREATE TABLE list_entries (
                username VARCHAR NOT NULL,
                anime_id INTEGER NOT NULL,
                status VARCHAR NOT NULL CHECK (status IN ({_quoted(LIST_STATUSES)})),
                score SMALLINT NOT NULL CHECK (score BETWEEN 0 AND 10),  -- 0 = unrated
                num_episodes_watched INTEGER NOT NULL CHECK (num_episodes_watched >= 0),
                is_rewatching BOOLEAN NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL,
                start_date VARCHAR,  -- YYYY, YYYY-MM or YYYY-MM-DD as MAL gives it
                finish_date VARCHAR,
                first_seen_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (username, anime_id)
            )
            """,
        ),
    ),
    Migration(
        2,
        "anime metadata and relations",
        (
            """
            CREATE TABLE anime (
                anime_id INTEGER PRIMARY KEY,
                title VARCHAR NOT NULL,
                media_type VARCHAR,
                rating VARCHAR,  -- g, pg, pg_13, r, r+, rx
                start_date VARCHAR,
                mean DOUBLE,
                popularity INTEGER,
                num_list_users INTEGER,
                num_episodes INTEGER,
                genres VARCHAR[] NOT NULL,
                alternative_titles JSON,
                fetched_at TIMESTAMPTZ NOT NULL
            )
            """,
            """
            CREATE TABLE anime_relations (
                anime_id INTEGER NOT NULL,
                related_id INTEGER NOT NULL,
                relation_type VARCHAR NOT NULL,  -- sequel, prequel, parent_story, side_story, ...
                PRIMARY KEY (anime_id, related_id)
            )
            """,
        ),
    ),
    Migration(
        3,
        "crawl runs",
        (
            """
            CREATE TABLE crawl_runs (
                run_id VARCHAR PRIMARY KEY,
                started_at TIMESTAMPTZ NOT NULL,
                finished_at TIMESTAMPTZ,
                status VARCHAR NOT NULL,
                params JSON,
                stats JSON
            )
            """,
        ),
    ),
    Migration(
        4,
        "model events",
        (
            "CREATE SEQUENCE model_events_order",
            f"""
            CREATE TABLE model_events (
                event_id VARCHAR PRIMARY KEY,  -- uuid
                "at" TIMESTAMPTZ NOT NULL,  -- AT is a keyword: quote the name in SQL
                kind VARCHAR NOT NULL CHECK (kind IN ({_quoted(MODEL_EVENT_KINDS)})),
                model_version VARCHAR,
                from_stage VARCHAR,  -- challenger, champion, archived
                to_stage VARCHAR,
                reason VARCHAR,
                details JSON,  -- the numbers behind the decision: metrics, gate checks
                recorded_order BIGINT NOT NULL DEFAULT nextval('model_events_order')  -- ties of at
            )
            """,
        ),
    ),
    Migration(
        5,
        "when users went private or deleted their account",
        (
            # Set when a fetch answers private (403) or not found (404), kept while the user stays
            # unreachable, cleared when their list is fetched again: snapshots leave these users
            # out at once and `sprout.store.retention` purges their entries after a while.
            "ALTER TABLE crawl_state ADD COLUMN withdrawn_at TIMESTAMPTZ",
            "UPDATE crawl_state SET withdrawn_at = coalesce(last_crawl_at, now()) WHERE state IN ('private', 'not_found')",
        ),
    ),
    Migration(
        6,
        "held mass deletions",
        (
            # When a full list that would have deleted most of the stored list was held back; a
            # later full list that agrees deletes (see sprout.store.entries).
            "ALTER TABLE crawl_state ADD COLUMN mass_deletion_held_at TIMESTAMPTZ",
        ),
    ),
    Migration(
        7,
        "spooled crawls: claims on handed-out users and the batches applied",
        (
            # A user handed to a crawl worker (see sprout.crawl.assignments) is claimed by that
            # assignment until claimed_until: no other crawl picks them meanwhile. Applying the
            # worker's batch, or the claim running out, frees them.
            "ALTER TABLE crawl_state ADD COLUMN claimed_by VARCHAR",
            "ALTER TABLE crawl_state ADD COLUMN claimed_until TIMESTAMPTZ",
            # One row per spooled batch applied, written in the batch's own transaction: a batch
            # whose name is here is never applied again (sprout.crawl.ingest).
            """
            CREATE TABLE spool_batches (
                name VARCHAR PRIMARY KEY,
                run_id VARCHAR,  -- the crawl run that fetched it
                assignment VARCHAR,  -- the assignment it answers (NULL: published without one)
                applied_at TIMESTAMPTZ NOT NULL,
                lists INTEGER NOT NULL,
                outcomes INTEGER NOT NULL,
                entries BIGINT NOT NULL,  -- list rows the batch carried
                entries_added BIGINT NOT NULL,
                entries_changed BIGINT NOT NULL,
                entries_deleted BIGINT NOT NULL,
                profiles_changed INTEGER NOT NULL  -- counted by retraining like crawl_runs.stats
            )
            """,
        ),
    ),
    Migration(
        8,
        "show pictures",
        (
            # The show's cover image URL: MAL's main_picture.large, else .medium, else NULL. Rows
            # stored before this migration have none until their metadata is fetched again.
            "ALTER TABLE anime ADD COLUMN main_picture VARCHAR",
        ),
    ),
    Migration(
        9,
        "model health checks",
        (
            "CREATE SEQUENCE model_health_checks_order",
            # One row per check of the champion on what people added since its snapshot
            # (sprout.monitoring): the figures, and whether they called it degraded.
            """
            CREATE TABLE model_health_checks (
                check_id VARCHAR PRIMARY KEY,  -- uuid; a retried write records the check once
                checked_at TIMESTAMPTZ NOT NULL,
                model_version VARCHAR NOT NULL,
                snapshot_id VARCHAR NOT NULL,
                degraded BOOLEAN NOT NULL,
                figures JSON NOT NULL,
                recorded_order BIGINT NOT NULL DEFAULT nextval('model_health_checks_order')
            )
            """,
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL,
    name VARCHAR
)
"""


def schema_version(connection: duckdb.DuckDBPyConnection) -> int:
    """The newest migration applied to this file; 0 for a file without the ledger."""
    has_ledger = scalar(
        connection, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'schema_migrations' AND NOT temporary"
    )
    if not has_ledger:
        return 0
    return scalar(connection, "SELECT coalesce(max(version), 0) FROM schema_migrations")


def check_version(version: int, where: str) -> None:
    """Refuse a file written by newer code: its tables may mean things this code does not know."""
    if version > LATEST_VERSION:
        raise SchemaError(
            f"{where}: schema version {version} is newer than this code understands ({LATEST_VERSION}); "
            "upgrade sprout to open it"
        )


def migrate(connection: duckdb.DuckDBPyConnection, *, where: str = "database", target: int | None = None) -> int:
    """Apply the migrations this file lacks, each in its own transaction; return the new version.

    ``target`` stops early (tests build files as older code left them).
    """
    target = LATEST_VERSION if target is None else target
    connection.execute(_LEDGER)
    version = schema_version(connection)
    check_version(version, where)
    for migration in MIGRATIONS:
        if version < migration.version <= target:
            with transaction(connection):
                for statement in migration.statements:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_migrations VALUES (?, now(), ?)", [migration.version, migration.name]
                )
            version = migration.version
    return version
