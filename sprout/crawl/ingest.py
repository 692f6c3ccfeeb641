"""The store's one writer: apply a crawl's batches, straight from the crawl or from the spool.

`apply_batch` writes one `ListBatch` in one transaction: the lists (`write_guarded_tables`,
with the mass-deletion guard), then the outcomes (`record_outcomes`). The direct crawl calls it
for each flush (`StoreWriter`); `ingest_spool` calls it for each spooled batch, so a spooled
crawl stores exactly what the direct one would.

**Exactly once.** `ingest_spool` applies the spool's pending batches in name order. The batch's
name goes into ``spool_batches`` in the same transaction as its rows: a batch already recorded
is not applied again, and a batch whose transaction a kill rolled back is applied whole by the
next run. Only after the commit is the file deleted, so a kill between the two leaves a file
whose name is recorded; the next run deletes it without applying it. The same transaction ends
the assignment's claims on the batch's users (`sprout.crawl.assignments`): their crawl state,
``next_due_at`` included, changes only here.

**A late batch** cannot set a user back: a user whose stored crawl is newer than the batch's
fetch is left out of it (a worker that stalled past its claim, while another fetched the user
again, is the only way to publish one).

**A list the store refuses** (a constraint the client's checks missed) costs only its user, as
in a direct crawl: the batch is rolled back, each list is tried alone in a transaction that is
always rolled back, and the batch is then applied without the refused lists, whose users get an
'error' outcome with backoff. A store that refuses every list cannot be written: that fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from sprout.crawl.access import StoreAccess, as_access, in_session
from sprout.crawl.batch import BatchResult, ListBatch
from sprout.crawl.policy import CrawlPolicy, failure_outcome
from sprout.crawl.spool import Spool
from sprout.store import DueUser, Store
from sprout.store.crawl_state import outcomes_table, record_outcomes, release_claims, user_states
from sprout.store.database import registered, scalar
from sprout.store.diff import DeletionGuard
from sprout.store.entries import write_guarded_tables

log = logging.getLogger(__name__)

Step = Callable[[str, str], None]  # (step, batch name): "applied" (not committed yet), "committed", "removed"


@dataclass(frozen=True)
class Ledger:
    """The ``spool_batches`` row a spooled batch is applied under."""

    name: str
    run_id: str | None
    assignment: str | None
    applied_at: datetime


@dataclass
class IngestStats:
    """What one ingest did; ``as_dict`` is what the CLI, artifacts and events get."""

    batches: int = 0  # applied by this run
    already_applied: int = 0  # found recorded (a run killed before deleting them): deleted only
    users: int = 0
    lists: int = 0
    outcomes: int = 0
    entries: int = 0  # list rows the batches carried
    entries_added: int = 0
    entries_changed: int = 0
    entries_deleted: int = 0
    profiles_changed: int = 0
    users_refused: int = 0  # lists the store refused, recorded as errors
    users_stale: int = 0  # left out: the store holds a newer crawl of them (a worker stalled past its claim)
    users_deletions_held: int = 0
    temporary_removed: int = 0  # torn temporary files of killed writers
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


class _RolledBack(Exception):
    """Ends a trial transaction."""


def apply_batch(
    store: Store,
    batch: ListBatch,
    policy: CrawlPolicy,
    *,
    ledger: Ledger | None = None,
    before_commit: Callable[[], None] | None = None,
) -> BatchResult | None:
    """Write ``batch`` in one transaction; None when ``ledger`` names a batch applied before.

    ``before_commit`` is called with the rows written and the transaction still open.
    """
    guard = policy.deletion_guard()

    def attempt(refused: dict[str, Exception]) -> BatchResult | None:
        with store.transaction() as connection:
            result = _apply(connection, batch, guard, policy, refused, ledger)
            if before_commit is not None and result is not None:
                before_commit()
            return result

    try:
        return attempt({})
    except Exception:
        if not batch.writes.num_rows:
            raise
        refused = _refused_lists(store, batch, guard)
        if not refused:
            raise  # no list's fault: the store cannot be written
        log.warning("the store refused %d of %d lists; they are recorded as errors", len(refused), batch.writes.num_rows)
    return attempt(refused)


def _apply(
    connection: duckdb.DuckDBPyConnection,
    batch: ListBatch,
    guard: DeletionGuard,
    policy: CrawlPolicy,
    refused: dict[str, Exception],
    ledger: Ledger | None,
) -> BatchResult | None:
    if ledger is not None and scalar(connection, "SELECT count(*) FROM spool_batches WHERE name = ?", [ledger.name]):
        return None
    kept = batch
    if refused:
        kept = batch.without(refused).with_outcomes(_refusal_outcomes(connection, batch, refused, policy))
    stale = _stale_users(connection, kept) if ledger is not None else []
    kept = kept.without(stale) if stale else kept
    changes = write_guarded_tables(connection, kept.entries, kept.writes, guard) if kept.writes.num_rows else []
    record_outcomes(connection, kept.outcomes)
    result = BatchResult(changes, sorted(refused), stale=sorted(stale))
    if ledger is not None:
        _record(connection, ledger, batch, result)
        if ledger.assignment:
            release_claims(connection, batch.usernames(), ledger.assignment)
    return result


def _stale_users(connection: duckdb.DuckDBPyConnection, batch: ListBatch) -> list[str]:
    """Users of ``batch`` whose stored crawl is newer than the batch's fetch. Only a worker that
    stalled past its claim publishes such a batch: the user was fetched again meanwhile."""
    fetched = pa.concat_tables(
        [
            batch.writes.select(["username", "fetched_at"]),
            batch.outcomes.select(["username", "crawled_at"]).rename_columns(["username", "fetched_at"]),
        ]
    )
    with registered(connection, batch_fetches=fetched):
        rows = connection.execute(
            "SELECT c.username FROM crawl_state c JOIN batch_fetches b USING (username) WHERE c.last_crawl_at > b.fetched_at"
        ).fetchall()
    return [name for (name,) in rows]


def _refused_lists(store: Store, batch: ListBatch, guard: DeletionGuard) -> dict[str, Exception]:
    """The lists of ``batch`` the store refuses, each tried alone and rolled back."""
    refused: dict[str, Exception] = {}
    for username in batch.writes["username"].to_pylist():
        one = batch.lists_only([username])
        try:
            with store.transaction() as connection:
                write_guarded_tables(connection, one.entries, one.writes, guard)
                raise _RolledBack
        except _RolledBack:
            pass
        except Exception as error:  # this list's fault: recorded as its user's error
            refused[username] = error
    return refused


def _refusal_outcomes(
    connection: duckdb.DuckDBPyConnection, batch: ListBatch, refused: dict[str, Exception], policy: CrawlPolicy
) -> pa.Table:
    states = {due.username: due for due in user_states(connection, refused)}
    fetched = dict(zip(batch.writes["username"].to_pylist(), batch.writes["fetched_at"].to_pylist()))
    return outcomes_table(
        [
            failure_outcome(error, states.get(name) or DueUser(name, "pending", None, None, 0), fetched[name], policy)
            for name, error in refused.items()
        ]
    )


def _record(connection: duckdb.DuckDBPyConnection, ledger: Ledger, batch: ListBatch, result: BatchResult) -> None:
    added, changed, deleted, profiles = _sums(result)
    connection.execute(
        "INSERT INTO spool_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ledger.name, ledger.run_id, ledger.assignment, ledger.applied_at, batch.writes.num_rows,
            batch.outcomes.num_rows, batch.entries.num_rows, added, changed, deleted, profiles,
        ],
    )


def _sums(result: BatchResult) -> tuple[int, int, int, int]:
    counts = [change.counts for change in result.changes]
    return (
        sum(c.added for c in counts), sum(c.changed for c in counts), sum(c.deleted for c in counts),
        sum(bool(c.total) for c in counts),
    )


class StoreWriter:
    """The crawl's batch writer when it writes the store itself: each flush in one short session."""

    def __init__(self, store: Store | StoreAccess, policy: CrawlPolicy) -> None:
        self.access = as_access(store)
        self.policy = policy

    async def write(self, batch: ListBatch) -> BatchResult:
        return await in_session(self.access, lambda store: apply_batch(store, batch, self.policy))


def apply_pending(
    spool: Spool,
    store: Store,
    *,
    policy: CrawlPolicy | None = None,
    clock: Callable[[], datetime] | None = None,
    on_step: Step | None = None,
) -> IngestStats:
    """`ingest_spool` on a store already open (blocking)."""
    policy = policy or CrawlPolicy()
    clock = clock or (lambda: datetime.now(UTC))
    step = on_step or (lambda step, name: None)
    stats = IngestStats()
    started = time.perf_counter()
    stats.temporary_removed = spool.sweep()
    for name in spool.pending():
        spooled = spool.read(name)
        ledger = Ledger(name, spooled.run_id, spooled.assignment, clock())
        result = apply_batch(store, spooled.batch, policy, ledger=ledger, before_commit=lambda: step("applied", name))
        if result is None:
            stats.already_applied += 1
        else:
            step("committed", name)
            _count(stats, spooled.batch, result)
        spool.remove(name)
        step("removed", name)
    stats.duration_s = round(time.perf_counter() - started, 3)
    return stats


def _count(stats: IngestStats, batch: ListBatch, result: BatchResult) -> None:
    added, changed, deleted, profiles = _sums(result)
    stats.batches += 1
    stats.users += batch.users
    stats.lists += len(result.changes)
    stats.outcomes += batch.outcomes.num_rows
    stats.entries += batch.entries.num_rows
    stats.entries_added += added
    stats.entries_changed += changed
    stats.entries_deleted += deleted
    stats.profiles_changed += profiles
    stats.users_refused += len(result.refused)
    stats.users_stale += len(result.stale)
    stats.users_deletions_held += sum(bool(change.held) for change in result.changes)


async def ingest_spool(
    spool: Spool,
    store: Store | StoreAccess,
    *,
    policy: CrawlPolicy | None = None,
    clock: Callable[[], datetime] | None = None,
    on_step: Step | None = None,
) -> IngestStats:
    """Apply every pending batch of ``spool`` to the store, in name order, each exactly once.

    ``store`` is an open `Store` or a `StoreAccess` (opened once, for the whole ingest, and only
    when there is something to apply). ``policy`` gives the mass-deletion guard and the backoff of
    refused lists; ``on_step`` is told each durable step (crash tests stop the process there).
    """
    if not await asyncio.to_thread(spool.pending):
        stats = IngestStats()
        stats.temporary_removed = await asyncio.to_thread(spool.sweep)
        return stats
    return await in_session(
        as_access(store), lambda opened: apply_pending(spool, opened, policy=policy, clock=clock, on_step=on_step)
    )

