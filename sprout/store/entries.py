"""Writing and reading users' list entries, set-based.

A batch of fetched lists becomes Arrow tables (entries, and one row per write). The users'
stored rows are read in one query, diffed against the batch in Arrow (`diff.py`), and only the
writes the diff calls for are run: a DELETE of rows a full list dropped, a plain INSERT of new
rows, an upsert of changed ones, and the crawl-state update. The cost is per batch, not per
entry. Every function runs inside the caller's transaction, so a batch is written whole or not
at all.

A full list that would delete most of a long stored list, or all of a stored list of any
length, has its deletions held back (see
`diff.DeletionGuard`): the rows stay, the crawl state remembers when (``mass_deletion_held_at``),
no full refresh is recorded and the due-user query reads the user as never fully listed, so the
next crawl lists the whole list again. Only a later full list that agrees deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sprout.mal.models import ListEntry

from .crawl_state import insert_new_users
from .database import UTC_TIMESTAMP, as_utc, registered, scalar, unique_rounds
from .diff import ENTRY_FIELDS, DeletionGuard, diff_lists, last_of_repeats
from .records import ChangeCounts, UserListWrite

ENTRY_SCHEMA = pa.schema(
    [
        ("position", pa.int32()),  # order within the call: the last of repeated anime ids wins
        ("username", pa.string()),
        ("anime_id", pa.int32()),
        ("status", pa.string()),
        ("score", pa.int16()),
        ("num_episodes_watched", pa.int32()),
        ("is_rewatching", pa.bool_()),
        ("updated_at", UTC_TIMESTAMP),
        ("start_date", pa.string()),
        ("finish_date", pa.string()),
    ]
)
WRITE_SCHEMA = pa.schema(
    [
        ("username", pa.string()),
        ("full", pa.bool_()),
        ("fetched_at", UTC_TIMESTAMP),
        ("next_due_at", UTC_TIMESTAMP),
        ("http_status", pa.int32()),
    ]
)
_STORED_SCHEMA = pa.schema(list(ENTRY_SCHEMA)[1:])
_ROW_COLUMNS = ", ".join(["username", "anime_id", *ENTRY_FIELDS, "first_seen_at"])
_UPDATES = ", ".join(f"{name} = excluded.{name}" for name in ENTRY_FIELDS)
DEFAULT_GUARD = DeletionGuard()  # crawled lists; the data-set import writes unguarded
_UPDATE_CRAWL_STATE = """
UPDATE crawl_state SET
    state = 'ok',
    http_status = u.http_status,
    attempts = 0,
    last_error = NULL,
    last_crawl_at = u.fetched_at,
    next_due_at = u.next_due_at,
    high_water_mark = greatest(crawl_state.high_water_mark, u.newest),  -- greatest skips NULLs
    last_full_refresh_at = coalesce(u.full_fetched_at, crawl_state.last_full_refresh_at),
    mass_deletion_held_at = CASE WHEN u.held > 0 THEN u.fetched_at
                                 WHEN u.full THEN NULL  -- a full list settled it, one way or the other
                                 ELSE crawl_state.mass_deletion_held_at END,
    entries = u.entries,
    withdrawn_at = NULL  -- the list is readable again
FROM crawl_update u
WHERE crawl_state.username = u.username
"""


def entries_table(writes: list[UserListWrite]) -> pa.Table:
    """All entries of ``writes`` as one Arrow table."""
    fields = [entry.__dict__ for entry in chain.from_iterable(write.entries for write in writes)]
    sizes = np.array([len(write.entries) for write in writes], dtype=np.int64)
    write_of_entry = pa.array(np.repeat(np.arange(len(writes), dtype=np.int32), sizes))  # [n]
    names = pa.array([write.username for write in writes], pa.string())
    return pa.Table.from_arrays(
        [
            pa.array(np.arange(len(fields), dtype=np.int32)),
            pa.DictionaryArray.from_arrays(write_of_entry, names).cast(pa.string()),
            *(pa.array(list(map(itemgetter(field.name), fields)), field.type) for field in list(ENTRY_SCHEMA)[2:]),
        ],
        schema=ENTRY_SCHEMA,
    )


def writes_table(writes: list[UserListWrite], http_status: int | None = 200) -> pa.Table:
    """One `WRITE_SCHEMA` row per write."""
    return pa.Table.from_pylist(
        [
            {
                "username": write.username,
                "full": write.full,
                "fetched_at": as_utc(write.fetched_at, "fetched_at"),
                "next_due_at": as_utc(write.next_due_at, "next_due_at"),
                "http_status": http_status,
            }
            for write in writes
        ],
        schema=WRITE_SCHEMA,
    )


@dataclass(frozen=True, slots=True)
class GuardedChange:
    """What one write did, and how many deletions the mass-deletion guard held back."""

    counts: ChangeCounts
    held: int = 0


def write_user_lists(
    connection: duckdb.DuckDBPyConnection, writes: list[UserListWrite], guard: DeletionGuard | None = DEFAULT_GUARD
) -> list[ChangeCounts]:
    """Store fetched lists and mark their users 'ok'; one `ChangeCounts` per write, in order.

    Several writes for one user in a call apply one after another (rarely needed, still exact).
    """
    return [change.counts for change in write_guarded_lists(connection, writes, guard)]


def write_guarded_lists(
    connection: duckdb.DuckDBPyConnection, writes: list[UserListWrite], guard: DeletionGuard | None
) -> list[GuardedChange]:
    """`write_user_lists` that also reports the deletions ``guard`` held back, per write."""
    changes: dict[int, GuardedChange] = {}
    for batch in unique_rounds(list(enumerate(writes)), key=lambda indexed: indexed[1].username):
        indices, batch_writes = zip(*batch)
        batch_writes = list(batch_writes)
        found = write_guarded_tables(connection, entries_table(batch_writes), writes_table(batch_writes), guard)
        changes.update(zip(indices, found))
    return [changes[index] for index in range(len(writes))]


def write_guarded_tables(
    connection: duckdb.DuckDBPyConnection, entries: pa.Table, writes: pa.Table, guard: DeletionGuard | None,
    source: str = "crawl",
) -> list[GuardedChange]:
    """`write_guarded_lists` for lists already in Arrow: ``entries`` as ``ENTRY_SCHEMA``, ``writes``
    as ``WRITE_SCHEMA`` with one write per username (see `write_tables`)."""
    return _write(connection, entries, writes, source, guard)


def write_tables(
    connection: duckdb.DuckDBPyConnection, entries: pa.Table, writes: pa.Table, source: str
) -> list[ChangeCounts]:
    """The set-based write of `write_user_lists`, for callers that already hold Arrow tables
    (and whose full lists are the truth: no mass-deletion guard).

    ``entries`` follows ``ENTRY_SCHEMA`` and ``writes`` ``WRITE_SCHEMA``, one write per username.
    Within a write a repeated anime id keeps its last row. Users not stored yet are added with
    ``source``. Returns one `ChangeCounts` per write, in order.
    """
    return [change.counts for change in _write(connection, entries, writes, source, None)]


def _write(
    connection: duckdb.DuckDBPyConnection, entries: pa.Table, writes: pa.Table, source: str,
    guard: DeletionGuard | None,
) -> list[GuardedChange]:
    if guard is not None:
        writes = writes.append_column("confirms", _confirms(connection, writes))
    diff = diff_lists(
        last_of_repeats(entries), _stored_rows(connection, writes["username"].to_pylist()), writes, guard
    )
    if diff.deleted.num_rows:
        with registered(connection, deleted_rows=diff.deleted):
            connection.execute(
                """
                DELETE FROM list_entries le USING deleted_rows d
                WHERE le.username = d.username AND le.anime_id = d.anime_id
                """
            )
    if diff.added.num_rows:  # a plain INSERT costs half of an upsert; columns are in table order
        connection.from_arrow(diff.added).insert_into("list_entries")
    if diff.changed.num_rows:
        with registered(connection, changed_rows=diff.changed):
            connection.execute(
                f"""
                INSERT INTO list_entries ({_ROW_COLUMNS}) SELECT {_ROW_COLUMNS} FROM changed_rows
                ON CONFLICT (username, anime_id) DO UPDATE SET {_UPDATES}
                """
            )
    _mark_ok(connection, writes, diff.per_write, source)
    columns = (diff.per_write[name].to_pylist() for name in ("added", "changed", "deleted", "held"))
    return [GuardedChange(ChangeCounts(*counts), held) for *counts, held in zip(*columns)]


def _confirms(connection: duckdb.DuckDBPyConnection, writes: pa.Table) -> pa.Array:
    """Per write: whether an earlier full list held back a mass deletion (so this one may confirm it)."""
    held = dict(
        connection.execute(
            """
            SELECT username, mass_deletion_held_at FROM crawl_state
            WHERE mass_deletion_held_at IS NOT NULL AND username IN (SELECT unnest(?))
            """,
            [writes["username"].to_pylist()],
        ).fetchall()
    )
    fetched = writes["fetched_at"].to_pylist()
    return pa.array(
        [name in held and held[name] < at for name, at in zip(writes["username"].to_pylist(), fetched)], pa.bool_()
    )


def _stored_rows(connection: duckdb.DuckDBPyConnection, usernames: list[str]) -> pa.Table:
    """The stored rows of ``usernames``.

    DuckDB finds them by scanning list_entries (it uses no index for this). Asking only for users
    whose crawl state counts entries (every write keeps that count exact) lets it skip the scan
    when none has any: first crawls, most of the volume.
    """
    stored = connection.sql(
        f"""
        SELECT username, anime_id, {", ".join(ENTRY_FIELDS)} FROM list_entries
        WHERE username IN (SELECT username FROM crawl_state WHERE entries > 0 AND username IN (SELECT unnest(?)))
        """,
        params=[usernames],
    )
    return stored.to_arrow_table().cast(_STORED_SCHEMA)


def _mark_ok(connection: duckdb.DuckDBPyConnection, writes: pa.Table, per_write: pa.Table, source: str) -> None:
    """Crawl state after a stored list: healthy, due again at next_due_at, high-water mark kept
    monotone, entries = the row count after the write. Users not stored yet are added first."""
    update = pa.table(
        {
            "username": writes["username"],
            "http_status": writes["http_status"],
            "fetched_at": writes["fetched_at"],
            "next_due_at": writes["next_due_at"],
            "newest": per_write["newest"],
            # A write whose deletions were held counts as incremental: no full refresh recorded.
            "full_fetched_at": pc.if_else(
                pc.and_(writes["full"], pc.equal(per_write["held"], 0)), writes["fetched_at"],
                pa.scalar(None, UTC_TIMESTAMP),
            ),
            "full": writes["full"],
            "held": per_write["held"],
            "entries": pc.cast(per_write["entries"], pa.int32()),
            "ord": pa.array(np.arange(1, writes.num_rows + 1)),
        }
    )
    with registered(connection, crawl_update=update):
        # Users usually exist (discovery adds them before the crawl), so the UPDATE alone does.
        updated = scalar(connection, _UPDATE_CRAWL_STATE)
        if updated < update.num_rows:
            insert_new_users(connection, "SELECT username, fetched_at AS discovered_at, ord FROM crawl_update", source)
            connection.execute(
                """
                INSERT INTO crawl_state (username, state, http_status, attempts, last_crawl_at, next_due_at,
                                         high_water_mark, last_full_refresh_at, last_error, entries)
                SELECT username, 'ok', http_status, 0, fetched_at, next_due_at, newest, full_fetched_at, NULL, entries
                FROM crawl_update
                WHERE username NOT IN (SELECT username FROM crawl_state)
                """
            )


def user_entries(connection: duckdb.DuckDBPyConnection, username: str) -> list[ListEntry]:
    """The user's stored list ordered by anime id, titles filled from the anime table when known."""
    rows = connection.execute(
        """
        SELECT le.anime_id, le.status, le.score, le.num_episodes_watched, le.is_rewatching, le.updated_at,
               le.start_date, le.finish_date, coalesce(a.title, '') AS title
        FROM list_entries le LEFT JOIN anime a USING (anime_id)
        WHERE le.username = ?
        ORDER BY le.anime_id
        """,
        [username],
    ).fetchall()
    names = ("anime_id", *ENTRY_FIELDS, "title")
    return [ListEntry.model_construct(**dict(zip(names, row))) for row in rows]
