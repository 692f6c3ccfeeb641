"""Eligible users and their list rows, read from the store in one streamed pass.

The eligibility query also counts each user's rows, so every user's slot in the CSR arrays is
known before the first row arrives. The rows then stream out of DuckDB in scan order, batch by
batch, and a counting sort drops each batch straight into its users' slots: no database sort and
no second copy of the rows, only their compact columns (10 bytes a row). Each user's rows are
put in anime-id order later, a chunk of users at a time (`UserRows.chunk`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa

from sprout.mal.models import LIST_STATUSES
from sprout.store.database import registered
from sprout.store.retention import WITHDRAWN_USERS_SQL

from .config import DatasetConfig
from .features import order_within_users

STREAM_BATCH_ROWS = 1_000_000  # rows per record batch taken from DuckDB: ~40 MB of temporaries

_STATUS_CODE_SQL = "CASE status " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(LIST_STATUSES)) + " END"

# Users who went private or deleted their account are left out at once, whatever the date.
_ELIGIBLE_USERS_SQL = f"""
SELECT username, count(*) AS n_rows
FROM list_entries
WHERE updated_at < $cutoff AND username NOT IN ({WITHDRAWN_USERS_SQL})
GROUP BY username
HAVING count(*) FILTER (WHERE status <> 'plan_to_watch') >= $min_counted
   AND max(updated_at) >= $active_since
"""

# Scan order, no ORDER BY: the counting sort places the rows, so DuckDB never sorts (or spills) them.
_ROWS_SQL = f"""
SELECT u.user_index, e.anime_id, ({_STATUS_CODE_SQL})::TINYINT AS status, e.score::TINYINT AS score
FROM list_entries e JOIN eligible_users u USING (username)
WHERE e.updated_at < $cutoff
"""


@dataclass(frozen=True)
class UserRows:
    """Eligible users sorted by name, and their rows in CSR form (any order within a user)."""

    usernames: list[str]  # [U] Python string order, independent of the database's collation
    indptr: np.ndarray  # [U + 1] int64
    anime_ids: np.ndarray  # [n] int32
    status: np.ndarray  # [n] int8 code in LIST_STATUSES order
    scores: np.ndarray  # [n] int8, 0 = unrated

    @property
    def n_users(self) -> int:
        return len(self.usernames)

    @property
    def n_rows(self) -> int:
        return int(self.indptr[-1])

    def chunks(self, max_rows: int) -> Iterator[tuple[int, int]]:
        """Consecutive user ranges ``[start, end)`` of at most ``max_rows`` rows each (a single
        user with more rows is a chunk of its own). No users is one empty chunk."""
        if self.n_users == 0:
            yield 0, 0
        start = 0
        while start < self.n_users:
            end = int(np.searchsorted(self.indptr, self.indptr[start] + max_rows, side="right")) - 1
            end = min(max(end, start + 1), self.n_users)
            yield start, end
            start = end

    def chunk(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Users ``start:end`` as a CSR batch (indptr [u + 1], anime_ids / status / scores [m])
        with each user's rows in anime-id order."""
        first, last = int(self.indptr[start]), int(self.indptr[end])
        indptr = self.indptr[start : end + 1] - first  # [u + 1]
        owner = np.repeat(np.arange(end - start, dtype=np.int32), np.diff(indptr))  # [m]
        anime_ids = self.anime_ids[first:last]
        order = order_within_users(owner, anime_ids)  # [m] by user, then anime id
        return indptr, anime_ids[order], self.status[first:last][order], self.scores[first:last][order]


def place_rows(cursor: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Counting-sort slots of one batch of rows: ``cursor [U]`` is each user's next free slot
    (advanced in place), ``users [b]`` the batch's owners; returns each row's slot [b]."""
    order = np.argsort(users, kind="stable")  # [b] scan order keeps a user's rows together: cheap
    by_user = users[order]
    starts = np.flatnonzero(np.r_[True, by_user[1:] != by_user[:-1]])  # [k] first row of each user's run
    counts = np.diff(np.r_[starts, len(users)])  # [k]
    present = by_user[starts]  # [k] distinct users
    slots = np.empty(len(users), np.int64)
    slots[order] = np.repeat(cursor[present] - starts, counts) + np.arange(len(users))
    cursor[present] += counts
    return slots


def read_user_rows(connection: duckdb.DuckDBPyConnection, config: DatasetConfig, cutoff: datetime) -> UserRows:
    """The users ``config`` admits as of ``cutoff`` and all their rows updated before it."""
    active_since = cutoff - timedelta(days=config.activity_window_days)
    params = {"cutoff": cutoff, "min_counted": config.min_counted_entries, "active_since": active_since}
    eligible = connection.sql(_ELIGIBLE_USERS_SQL, params=params).to_arrow_table()
    names = eligible["username"].to_pylist()
    order = sorted(range(len(names)), key=names.__getitem__)
    usernames = [names[i] for i in order]
    counts = eligible["n_rows"].to_numpy()[np.asarray(order, dtype=np.int64)]  # [U]
    del names, eligible
    indptr = np.zeros(len(usernames) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    n = int(indptr[-1])
    anime_ids, status, scores = np.empty(n, np.int32), np.empty(n, np.int8), np.empty(n, np.int8)
    cursor = indptr[:-1].copy()  # [U]
    users = pa.table({"username": pa.array(usernames, pa.string()),
                      "user_index": pa.array(np.arange(len(usernames), dtype=np.int32))})
    with registered(connection, eligible_users=users):
        reader = connection.sql(_ROWS_SQL, params={"cutoff": cutoff}).to_arrow_reader(STREAM_BATCH_ROWS)
        for batch in reader:
            slots = place_rows(cursor, batch.column(0).to_numpy())
            anime_ids[slots] = batch.column(1).to_numpy()
            status[slots] = batch.column(2).to_numpy()
            scores[slots] = batch.column(3).to_numpy()
    if not np.array_equal(cursor, indptr[1:]):
        raise RuntimeError("the store's rows changed while the snapshot read them")
    return UserRows(usernames, indptr, anime_ids, status, scores)
