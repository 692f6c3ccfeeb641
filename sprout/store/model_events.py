"""Model events: every registration, evaluation, gate decision and stage change, with its numbers.

The registry and the retrain flow append here; operators read the table to see why a model is
serving. Every function runs inside the caller's transaction.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from sprout.json_values import json_ready

from .database import StoreError, as_utc
from .schema import MODEL_EVENT_KINDS


@dataclass(frozen=True)
class ModelEvent:
    event_id: str
    at: datetime
    kind: str
    model_version: str | None
    from_stage: str | None
    to_stage: str | None
    reason: str | None
    details: dict[str, Any]


def record_model_event(
    connection: duckdb.DuckDBPyConnection,
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
    """Append one event; returns its id (a new uuid unless ``event_id`` is given).

    An event whose id is recorded already is left as it is: delivering an event twice (a
    registry outbox retried after a crash) records it once.
    """
    if kind not in MODEL_EVENT_KINDS:
        raise StoreError(f"unknown model event kind {kind!r}; expected one of {', '.join(MODEL_EVENT_KINDS)}")
    event_id = event_id or str(uuid.uuid4())
    # default=float turns numpy scalars into numbers.
    document = json.dumps(json_ready(details or {}), default=float, sort_keys=True)
    connection.execute(
        """
        INSERT OR IGNORE INTO model_events (event_id, "at", kind, model_version, from_stage, to_stage, reason, details)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?::JSON)
        """,
        [event_id, as_utc(at, "at"), kind, model_version, from_stage, to_stage, reason, document],
    )
    return event_id


def model_events(
    connection: duckdb.DuckDBPyConnection, limit: int | None = None, model_version: str | None = None
) -> list[ModelEvent]:
    """Events newest first (ties in the order they were recorded, reversed); all when ``limit`` is None."""
    rows = connection.execute(
        """
        SELECT event_id, "at", kind, model_version, from_stage, to_stage, reason, details FROM model_events
        WHERE ?::VARCHAR IS NULL OR model_version = ?
        ORDER BY "at" DESC, recorded_order DESC
        LIMIT ?
        """,
        [model_version, model_version, limit],
    ).fetchall()
    return [ModelEvent(*row[:7], json.loads(row[7] or "{}")) for row in rows]
