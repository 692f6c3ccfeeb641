"""Who crawls whom when crawl workers never open the store: assignments, backed by claims.

Only the store's host can see who is due, so it hands the work out (`job.hand_out`): in the
store it picks due users that no claim holds and claims them for an assignment until
``claimed_until`` (`crawl_state.claim_users`); then it publishes the assignment to the spool
as ``assignments/<name>.parquet``, one row per user with the crawl state a fetch plans from
(high-water mark, last full listing, failed attempts). Claims first, file second: a host killed
in between leaves claimed users with no file, who wait for the claim to run out.

A worker takes an assignment by renaming it to ``taken/<name>@<worker>.parquet``: of several
workers renaming one file, exactly one succeeds. (On an object store a rename is a copy and a
delete, so the Prefect crawl flow holds a global lock around taking; CLI workers there should be
given assignments by name.) A worker restarted under the same name resumes what it had taken.

What this guarantees:

- **No user is fetched twice at once.** Due-user queries leave claimed users out (the direct
  crawl's too), and a worker fetches an assigned user only while the claim lasts, stopping a
  margin before it runs out; only then can the user be handed out again.
- **Fetched is not done until ingested.** A worker never changes crawl state: ``next_due_at``
  advances, and the claim ends, when `ingest` applies the batch holding the user, in the same
  transaction. A worker that dies before publishing leaves its users due and claimed; when the
  claim runs out they are handed out again. Published batches of a dead worker are still
  applied; fetching those users again later is harmless, and a batch that arrives after a newer
  crawl of its user was applied is left out for that user (`ingest`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyarrow as pa

from sprout.crawl.spool import ASSIGNMENTS, TAKEN, Spool, safe_name
from sprout.store.database import UTC_TIMESTAMP, as_utc
from sprout.store.records import DueUser

METADATA_KEY = b"sprout.assignment"
# A worker stops starting fetches this long before its claim runs out (a tenth of the claim when shorter).
CLAIM_MARGIN = timedelta(minutes=5)
ASSIGNMENT_SCHEMA = pa.schema(
    [
        pa.field("username", pa.string(), nullable=False),
        pa.field("state", pa.string(), nullable=False),
        pa.field("high_water_mark", UTC_TIMESTAMP),
        pa.field("last_full_refresh_at", UTC_TIMESTAMP),
        pa.field("attempts", pa.int32(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Assignment:
    """Users handed to one crawl worker, claimed for it from ``claimed_at`` to ``claimed_until``."""

    name: str
    users: list[DueUser]
    claimed_at: datetime
    claimed_until: datetime
    force_full: bool = False

    @property
    def fetch_until(self) -> datetime:
        """When the worker stops starting fetches: a margin before the claim runs out."""
        return self.claimed_until - min(CLAIM_MARGIN, (self.claimed_until - self.claimed_at) / 10)


def publish_assignment(spool: Spool, assignment: Assignment) -> None:
    rows = [(u.username, u.state, u.high_water_mark, u.last_full_refresh_at, u.attempts) for u in assignment.users]
    columns = list(zip(*rows)) or [()] * len(ASSIGNMENT_SCHEMA)
    table = pa.Table.from_arrays(
        [pa.array(list(values), field.type) for values, field in zip(columns, ASSIGNMENT_SCHEMA)], schema=ASSIGNMENT_SCHEMA
    )
    metadata = {
        "claimed_at": as_utc(assignment.claimed_at).isoformat(),
        "claimed_until": as_utc(assignment.claimed_until).isoformat(),
        "force_full": assignment.force_full,
    }
    spool.put_table(ASSIGNMENTS, assignment.name, table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata)}))


def _read(spool: Spool, folder: str, file_name: str, name: str) -> Assignment:
    table = spool.get_table(folder, file_name)
    metadata = json.loads(table.schema.metadata[METADATA_KEY])
    users = [DueUser(**row) for row in table.select(ASSIGNMENT_SCHEMA.names).to_pylist()]
    return Assignment(
        name, users, datetime.fromisoformat(metadata["claimed_at"]), datetime.fromisoformat(metadata["claimed_until"]),
        bool(metadata.get("force_full")),
    )


def _taken_name(name: str, worker: str) -> str:
    return f"{name}@{safe_name(worker)}"


def waiting(spool: Spool) -> list[str]:
    """Assignments no worker has taken yet, oldest first."""
    return spool.names(ASSIGNMENTS)


def take_assignment(spool: Spool, worker: str, name: str | None = None) -> Assignment | None:
    """The assignment ``worker`` crawls next: one it took before and did not finish (it was
    restarted), else the oldest waiting one (or ``name`` only); None when there is none."""
    mine = [taken for taken in spool.names(TAKEN) if taken.endswith(f"@{safe_name(worker)}")]
    for taken in mine:
        assignment = taken.rsplit("@", 1)[0]
        if name is None or assignment == name:
            return _read(spool, TAKEN, taken, assignment)
    for candidate in [name] if name is not None else waiting(spool):
        if spool.move(ASSIGNMENTS, candidate, TAKEN, _taken_name(candidate, worker)):
            return _read(spool, TAKEN, _taken_name(candidate, worker), candidate)
    return None


def finish_assignment(spool: Spool, assignment: Assignment, worker: str) -> None:
    """Drop a crawled assignment: its batches are published, their ingest ends the claims."""
    spool.delete(TAKEN, _taken_name(assignment.name, worker))


def sweep_expired(spool: Spool, now: datetime) -> int:
    """Delete assignments whose claims have run out (taken or not; their users are handed out
    again); returns how many."""
    removed = 0
    for folder in (ASSIGNMENTS, TAKEN):
        for file_name in spool.names(folder):
            try:
                expired = _read(spool, folder, file_name, file_name).claimed_until <= now
            except FileNotFoundError:  # finished meanwhile
                continue
            if expired:
                spool.delete(folder, file_name)
                removed += 1
    return removed
