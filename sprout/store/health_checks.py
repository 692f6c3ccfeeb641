"""Model health checks: one row per check of the champion (see `sprout.monitoring.health`).

Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from sprout.json_values import json_ready

from .database import as_utc


@dataclass(frozen=True)
class HealthCheckRow:
    check_id: str
    checked_at: datetime
    model_version: str
    snapshot_id: str
    degraded: bool
    figures: dict[str, Any]


def record_health_check(connection: duckdb.DuckDBPyConnection, row: HealthCheckRow) -> None:
    """Append one check; a check whose id is recorded already is left as it is (a retry)."""
    document = json.dumps(json_ready(row.figures), default=float, sort_keys=True)
    connection.execute(
        """
        INSERT OR IGNORE INTO model_health_checks (check_id, checked_at, model_version, snapshot_id, degraded, figures)
        VALUES (?, ?, ?, ?, ?, ?::JSON)
        """,
        [row.check_id, as_utc(row.checked_at, "checked_at"), row.model_version, row.snapshot_id, row.degraded,
         document],
    )


def health_checks(
    connection: duckdb.DuckDBPyConnection, limit: int | None = None, model_version: str | None = None
) -> list[HealthCheckRow]:
    """Checks newest first; all when ``limit`` is None, only ``model_version``'s when given."""
    rows = connection.execute(
        """
        SELECT check_id, checked_at, model_version, snapshot_id, degraded, figures FROM model_health_checks
        WHERE ?::VARCHAR IS NULL OR model_version = ?
        ORDER BY checked_at DESC, recorded_order DESC
        LIMIT ?
        """,
        [model_version, model_version, limit],
    ).fetchall()
    return [HealthCheckRow(*row[:5], json.loads(row[5])) for row in rows]
