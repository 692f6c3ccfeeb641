"""Crawl runs: when each crawl started and ended, what it was asked to do and what it did.

Parameters are stored for operators to read, so anything that looks like a credential is masked
before it reaches the file. Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import duckdb

from .database import StoreError, as_utc, scalar
from .records import CrawlRun

RUNNING = "running"
INTERRUPTED = "interrupted"
MASK = "***"
_SECRET_KEY = re.compile(r"secret|token|password|passwd|client_id|api_key|apikey|authorization|credential", re.I)


def without_secrets(value: Any) -> Any:
    """``value`` with every field whose name looks like a credential replaced by a mask."""
    if isinstance(value, dict):
        return {key: MASK if _SECRET_KEY.search(str(key)) else without_secrets(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_secrets(item) for item in value]
    return value


def _json(value: dict[str, Any]) -> str:
    # default=str turns datetimes and paths into text, and pydantic SecretStr into its mask.
    return json.dumps(without_secrets(value), default=str, sort_keys=True)


def start_crawl_run(
    connection: duckdb.DuckDBPyConnection, run_id: str, started_at: datetime, params: dict[str, Any]
) -> None:
    exists = scalar(connection, "SELECT count(*) FROM crawl_runs WHERE run_id = ?", [run_id])
    if exists:
        raise StoreError(f"crawl run {run_id!r} already exists")
    # Only one writer holds the file, so a run still marked running was killed before it finished.
    connection.execute(
        "UPDATE crawl_runs SET status = ?, finished_at = ? WHERE status = ?",
        [INTERRUPTED, as_utc(started_at, "started_at"), RUNNING],
    )
    connection.execute(
        "INSERT INTO crawl_runs VALUES (?, ?, NULL, ?, ?::JSON, NULL)",
        [run_id, as_utc(started_at, "started_at"), RUNNING, _json(params)],
    )


def finish_crawl_run(
    connection: duckdb.DuckDBPyConnection, run_id: str, finished_at: datetime, status: str, stats: dict[str, Any]
) -> None:
    updated = scalar(
        connection,
        "UPDATE crawl_runs SET finished_at = ?, status = ?, stats = ?::JSON WHERE run_id = ?",
        [as_utc(finished_at, "finished_at"), status, _json(stats), run_id],
    )
    if not updated:
        raise StoreError(f"crawl run {run_id!r} was never started")


def last_crawl_run(connection: duckdb.DuckDBPyConnection, status: str | None = None) -> CrawlRun | None:
    """The most recently started run (with ``status`` when given), or None."""
    rows = connection.execute(
        """
        SELECT run_id, started_at, finished_at, status, params, stats FROM crawl_runs
        WHERE ?::VARCHAR IS NULL OR status = ?
        ORDER BY started_at DESC, run_id DESC LIMIT 1
        """,
        [status, status],
    ).fetchall()
    if not rows:
        return None
    run_id, started_at, finished_at, run_status, params, stats = rows[0]
    return CrawlRun(run_id, started_at, finished_at, run_status, json.loads(params or "{}"), json.loads(stats or "{}"))


def profiles_changed_since(connection: duckdb.DuckDBPyConnection, since: datetime | None) -> int:
    """Users whose stored list changed in crawl runs that finished after ``since`` (all when None),
    and in spooled batches applied after it.

    Failed runs count too: what they stored before failing is in the store.
    """
    return int(
        scalar(
            connection,
            """
            SELECT (SELECT coalesce(sum(CAST(json_extract(stats, '$.profiles_changed') AS BIGINT)), 0)
                    FROM crawl_runs
                    WHERE stats IS NOT NULL AND (?::TIMESTAMPTZ IS NULL OR finished_at > ?::TIMESTAMPTZ))
                 + (SELECT coalesce(sum(profiles_changed), 0) FROM spool_batches
                    WHERE ?::TIMESTAMPTZ IS NULL OR applied_at > ?::TIMESTAMPTZ)
            """,
            [since, since, since, since],
        )
    )
