"""The store's one writer: apply a crawl's batches, straight from the crawl or from the spool.

`apply_batch` writes one `ListBatch` in one transaction: the lists (`write_guarded_tables`,
with the mass-deletion guard), then the outcomes (`record_outcomes`). The direct crawl calls it
for each flush (`StoreWriter`); `ingest_spool` applies spooled batches through the same code
(`apply_spooled`), so a spooled crawl stores exactly what the direct one would.

**Groups.** A transaction costs more than its rows: the commit, and lookups that read a whole
table (the users to add, the crawl state to update) whatever the batch's size. So the ingest
applies consecutive spooled batches together, up to ``group_entries`` list rows in one
transaction, as one batch; a group ends early where the next batch names a user it already
holds (a user is written once per transaction).

**Exactly once.** `ingest_spool` applies the spool's pending batches in name order. Each batch's
name goes into ``spool_batches`` in the same transaction as its rows: a batch already recorded
is not applied again, and a group whose transaction a kill rolled back is applied whole by the
next run. Only after the commit are the files deleted, so a kill between the two leaves files
whose names are recorded; the next run deletes them without applying them. The same
transaction ends the assignments' claims on the batches' users (`sprout.crawl.assignments`):
their crawl state, ``next_due_at`` included, changes only here.

**A late batch** cannot set a user back: a user whose stored crawl is newer than the batch's
fetch is left out of it (a worker that stalled past its claim, while another fetched the user
again, is the only way to publish one).

**A list the store refuses** (a constraint the client's checks missed) costs only its user, as
in a direct crawl: the transaction is rolled back, each list is tried alone in a transaction
that is always rolled back, and the batch is then applied without the refused lists, whose
users get an 'error' outcome with backoff. A store that refuses every list cannot be written:
that fails.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TypeVar

import duckdb
import pyarrow as pa

from sprout.config import INGEST_GROUP_ENTRIES
from sprout.crawl.access import StoreAccess, as_access, in_session
from sprout.crawl.batch import BatchResult, ListBatch
from sprout.crawl.policy import CrawlPolicy, failure_outcome
from sprout.crawl.spool import Spool, SpooledBatch
from sprout.store import DueUser, Store
from sprout.store.crawl_state import insert_new_users, outcomes_table, record_outcomes, release_claims, user_states
from sprout.store.database import registered
from sprout.store.diff import DeletionGuard
from sprout.store.entries import write_guarded_tables

log = logging.getLogger(__name__)

# DuckDB checkpoints whenever its write-ahead log passes 16 MB, and a checkpoint also writes out
# the entries' key index, which grows with the store: with groups of 250,000 rows that is nearly
# every commit. Checkpointing after each GiB of log instead made a 54M-row ingest 20% faster.
# A kill loses nothing either way: the next open replays the log.
INGEST_CHECKPOINT_THRESHOLD = "1GiB"
Step = Callable[[str, str], None]  # (step, batch name): "applied" (not committed yet), "committed", "removed"


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
    store: Store, batch: ListBatch, policy: CrawlPolicy, *, before_commit: Callable[[], None] | None = None
) -> BatchResult:
    """Write ``batch`` in one transaction; ``before_commit`` is called with the rows written and
    the transaction still open."""
    guard = policy.deletion_guard()

    def attempt(refused: dict[str, Exception]) -> BatchResult:
        with store.transaction() as connection:
            result, _ = _apply(connection, batch, guard, policy, refused, drop_stale=False)
            if before_commit is not None:
                before_commit()
            return result

    return _with_refusals(store, batch, guard, attempt)


def apply_spooled(
    store: Store,
    parts: Sequence[SpooledBatch],
    policy: CrawlPolicy,
    *,
    applied_at: datetime,
    before_commit: Callable[[list[str]], None] | None = None,
) -> dict[str, BatchResult | None]:
    """Apply spooled batches (their users distinct) in one transaction, each recorded in
    ``spool_batches`` under its name; per name its result, None for one recorded before.

    ``before_commit`` is called with the names applied and the transaction still open.
    """
    guard = policy.deletion_guard()
    combined = ListBatch.concat([part.batch for part in parts])

    def attempt(refused: dict[str, Exception]) -> dict[str, BatchResult | None]:
        with store.transaction() as connection:
            recorded = _recorded(connection, [part.name for part in parts])
            fresh = [part for part in parts if part.name not in recorded]
            results: dict[str, BatchResult | None] = {name: None for name in recorded}
            if not fresh:
                return results
            batch = combined if len(fresh) == len(parts) else ListBatch.concat([part.batch for part in fresh])
            if len(fresh) > 1:
                _discover_in_order(connection, fresh)
            result, listed = _apply(connection, batch, guard, policy, refused, drop_stale=True)
            for part, part_result in zip(fresh, _per_part(result, listed, fresh)):
                _record(connection, part, applied_at, part_result)
                results[part.name] = part_result
            for assignment, names in _claims(fresh).items():
                release_claims(connection, names, assignment)
            if before_commit is not None:
                before_commit([part.name for part in fresh])
            return results

    return _with_refusals(store, combined, guard, attempt)


T = TypeVar("T")


def _with_refusals(
    store: Store, batch: ListBatch, guard: DeletionGuard, attempt: Callable[[dict[str, Exception]], T]
) -> T:
    """``attempt({})``; when that fails, again without the lists the store refuses on their own."""
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
    *,
    drop_stale: bool,
) -> tuple[BatchResult, list[str]]:
    """Write ``batch`` less the ``refused`` lists (and, with ``drop_stale``, less users the store
    holds a newer crawl of); the result and the usernames of the lists written, in order."""
    kept = batch.without(refused).with_outcomes(_refusal_outcomes(connection, batch, refused, policy)) if refused else batch
    stale = _stale_users(connection, kept) if drop_stale else []
    kept = kept.without(stale) if stale else kept
    changes = write_guarded_tables(connection, kept.entries, kept.writes, guard) if kept.writes.num_rows else []
    record_outcomes(connection, kept.outcomes)
    return BatchResult(changes, sorted(refused), stale=sorted(stale)), kept.writes["username"].to_pylist()


def _discover_in_order(connection: duckdb.DuckDBPyConnection, parts: Sequence[SpooledBatch]) -> None:
    """Add the users of ``parts`` new to the store in the order one transaction per batch
    discovers them: batch by batch, each batch's lists before its outcomes."""
    tables = []
    for part in parts:
        tables.append(part.batch.writes.select(["username", "fetched_at"]).rename_columns(["username", "discovered_at"]))
        tables.append(part.batch.outcomes.select(["username", "crawled_at"]).rename_columns(["username", "discovered_at"]))
    users = pa.concat_tables(tables)
    users = users.append_column("seen", pa.array(range(users.num_rows), pa.int64()))
    with registered(connection, group_users=users):
        new_users = """
            SELECT n.username, n.discovered_at, row_number() OVER (ORDER BY n.seen) AS ord FROM group_users n
            WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.username = n.username)
        """
        insert_new_users(connection, new_users, "crawl")


def _recorded(connection: duckdb.DuckDBPyConnection, names: list[str]) -> set[str]:
    rows = connection.execute("SELECT name FROM spool_batches WHERE name IN (SELECT unnest(?))", [names]).fetchall()
    return {name for (name,) in rows}


def _per_part(result: BatchResult, listed: list[str], parts: Sequence[SpooledBatch]) -> list[BatchResult]:
    """``result`` of a group split into its batches' own results."""
    change_of = dict(zip(listed, result.changes))
    split = []
    for part in parts:
        users = set(part.batch.usernames())
        split.append(
            BatchResult(
                [change_of[name] for name in part.batch.writes["username"].to_pylist() if name in change_of],
                [name for name in result.refused if name in users],
                stale=[name for name in result.stale if name in users],
            )
        )
    return split


def _claims(parts: Sequence[SpooledBatch]) -> dict[str, list[str]]:
    """The users of ``parts`` by the assignment that claimed them."""
    claims: dict[str, list[str]] = {}
    for part in parts:
        if part.assignment:
            claims.setdefault(part.assignment, []).extend(part.batch.usernames())
    return claims


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


def _record(
    connection: duckdb.DuckDBPyConnection, part: SpooledBatch, applied_at: datetime, result: BatchResult
) -> None:
    """The ``spool_batches`` row ``part`` is applied under."""
    added, changed, deleted, profiles = _sums(result)
    batch = part.batch
    connection.execute(
        "INSERT INTO spool_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            part.name, part.run_id, part.assignment, applied_at, batch.writes.num_rows,
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
    group_entries: int = INGEST_GROUP_ENTRIES,
) -> IngestStats:
    """`ingest_spool` on a store already open (blocking)."""
    policy = policy or CrawlPolicy()
    clock = clock or (lambda: datetime.now(UTC))
    step = on_step or (lambda step, name: None)
    stats = IngestStats()
    started = time.perf_counter()
    stats.temporary_removed = spool.sweep()
    with checkpoints_every(store, INGEST_CHECKPOINT_THRESHOLD):
        _apply_groups(spool, store, policy, clock, step, group_entries, stats)
    stats.duration_s = round(time.perf_counter() - started, 3)
    return stats


def _apply_groups(
    spool: Spool, store: Store, policy: CrawlPolicy, clock: Callable[[], datetime], step: Step, group_entries: int,
    stats: IngestStats,
) -> None:
    for group in spooled_groups(spool, spool.pending(), group_entries):
        results = apply_spooled(
            store, group, policy, applied_at=clock(),
            before_commit=lambda names: [step("applied", name) for name in names],
        )
        for part in group:
            result = results[part.name]
            if result is None:
                stats.already_applied += 1
            else:
                step("committed", part.name)
                _count(stats, part.batch, result)
        for part in group:
            spool.remove(part.name)
            step("removed", part.name)


@contextmanager
def checkpoints_every(store: Store, threshold: str) -> Iterator[None]:
    """DuckDB's ``checkpoint_threshold`` set to ``threshold`` meanwhile, then set back."""
    (previous,) = store.connection.execute("SELECT current_setting('checkpoint_threshold')").fetchall()[0]
    store.connection.execute(f"SET checkpoint_threshold = '{threshold}'")
    try:
        yield
    finally:
        store.connection.execute(f"SET checkpoint_threshold = '{previous}'")


def spooled_groups(spool: Spool, names: Iterable[str], group_entries: int) -> Iterator[list[SpooledBatch]]:
    """The batches ``names`` read in order and cut into groups of at most ``group_entries`` list
    rows (a larger batch is a group of its own) whose users are distinct."""
    group: list[SpooledBatch] = []
    users: set[str] = set()
    entries = 0
    for name in names:
        part = spool.read(name)
        part_users = set(part.batch.usernames())
        if group and (entries + part.batch.entries.num_rows > group_entries or not users.isdisjoint(part_users)):
            yield group
            group, users, entries = [], set(), 0
        group.append(part)
        users |= part_users
        entries += part.batch.entries.num_rows
    if group:
        yield group


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
    group_entries: int = INGEST_GROUP_ENTRIES,
) -> IngestStats:
    """Apply every pending batch of ``spool`` to the store, in name order, each exactly once,
    up to ``group_entries`` list rows per transaction.

    ``store`` is an open `Store` or a `StoreAccess` (opened once, for the whole ingest, and only
    when there is something to apply). ``policy`` gives the mass-deletion guard and the backoff of
    refused lists; ``on_step`` is told each durable step (crash tests stop the process there).
    """
    if not await asyncio.to_thread(spool.pending):
        stats = IngestStats()
        stats.temporary_removed = await asyncio.to_thread(spool.sweep)
        return stats
    return await in_session(
        as_access(store), lambda opened: apply_pending(
            spool, opened, policy=policy, clock=clock, on_step=on_step, group_entries=group_entries
        ),
    )

