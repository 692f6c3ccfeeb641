"""`build_snapshot`: cut an immutable, content-addressed training snapshot from the store.

SQL does the heavy lifting (corpus counts, the user filter, fetching the rows of eligible users
as columns); `features.profile_features` then applies the entry rules and the normalisation to
the whole batch at once — the same code serving runs on one profile.

Reproducibility: only entries updated on or before ``snapshot_date`` (UTC) are read, and the
activity window counts back from that date, never from today. Data without real timestamps,
such as the anime-5k import (every ``updated_at`` = 2016-12-21), builds with
``snapshot_date=date(2016, 12, 21)`` (or any date less than ``activity_window_days`` later), or
with a later date and ``activity_window_days`` widened to reach back to 2016-12-21.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from sprout.mal.models import LIST_STATUSES
from sprout.store import Store

from .config import DatasetConfig
from .corpus import build_corpus
from .features import ProfileBatch, normalised_values, owners, profile_features
from .snapshot_format import (
    Snapshot,
    SnapshotError,
    SnapshotManifest,
    SplitArrays,
    load_snapshot,
    write_snapshot,
)
from .splits import SPLIT_NAMES, TRAIN, UserSplit, holdout_mask, split_users

__all__ = ["Snapshot", "SnapshotError", "SnapshotManifest", "SplitArrays", "build_snapshot", "load_snapshot"]

_STATUS_CODE_SQL = "CASE status " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(LIST_STATUSES)) + " END"

_ELIGIBLE_USERS_SQL = """
SELECT username
FROM list_entries
WHERE updated_at < $cutoff
GROUP BY username
HAVING count(*) FILTER (WHERE status <> 'plan_to_watch') >= $min_counted
   AND max(updated_at) >= $active_since
"""

_ENTRIES_SQL = f"""
SELECT u.user_index, e.anime_id, ({_STATUS_CODE_SQL})::TINYINT AS status, e.score::TINYINT AS score
FROM list_entries e JOIN eligible_users u USING (username)
WHERE e.updated_at < $cutoff
ORDER BY u.user_index, e.anime_id
"""


def _cutoff(snapshot_date: date) -> datetime:
    """The exclusive end of the snapshot day in UTC."""
    if isinstance(snapshot_date, datetime):
        raise TypeError("snapshot_date is a calendar date (UTC); pass a datetime.date, not a datetime")
    return datetime.combine(snapshot_date + timedelta(days=1), time(), tzinfo=UTC)


@contextmanager
def _reading(source: Store | Path | str) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction over the store, so every query sees the same data."""
    if isinstance(source, Store):
        with source.transaction() as connection:
            yield connection
        return
    with Store.open(source, read_only=True) as store, store.transaction() as connection:
        yield connection


def _eligible_entries(
    connection: duckdb.DuckDBPyConnection, config: DatasetConfig, cutoff: datetime
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Eligible users sorted by name, and their rows as columns ordered by (user, anime id)."""
    active_since = cutoff - timedelta(days=config.activity_window_days)
    params = {"cutoff": cutoff, "min_counted": config.min_counted_entries, "active_since": active_since}
    names = connection.execute(_ELIGIBLE_USERS_SQL, params).fetchnumpy()["username"]
    usernames = sorted(names.tolist())  # Python order, independent of the database's collation
    eligible = pa.table(
        {
            "username": pa.array(usernames, pa.string()),
            "user_index": pa.array(np.arange(len(usernames), dtype=np.int32)),
        }
    )
    connection.register("eligible_users", eligible)
    try:
        columns = connection.execute(_ENTRIES_SQL, {"cutoff": cutoff}).fetchnumpy()
    finally:
        connection.unregister("eligible_users")
    return usernames, {name: np.asarray(column) for name, column in columns.items()}


def _split_arrays(
    batch: ProfileBatch, usernames: list[str], split: UserSplit, which: int, config: DatasetConfig
) -> SplitArrays:
    """The users of one split and their entries; held-out users get a fold-in / held-out split and
    are normalised with fold-in scores only (held-out scores must not leak into mu and sigma)."""
    users = split.users(which)  # [U_s]
    in_split = split.assignment[owners(batch.indptr)] == which  # [n]
    indptr = np.zeros(len(users) + 1, np.int64)
    np.cumsum(np.diff(batch.indptr)[users], out=indptr[1:])
    items, scores, status = batch.items[in_split], batch.scores[in_split], batch.status[in_split]
    if which == TRAIN:
        heldout = None
        values, rated = batch.values[in_split], batch.rated[in_split]
        mu, sigma = batch.mu[users], batch.sigma[users]
    else:
        heldout = holdout_mask(indptr, config.holdout_fraction, config.seed, split=which)  # [n_s]
        values, rated, mu, sigma = normalised_values(indptr, scores, status, counted=~heldout)
    return SplitArrays(
        usernames=tuple(usernames[u] for u in users.tolist()),
        indptr=indptr,
        items=items,
        values=values,
        rated=rated,
        scores=scores,
        mu=mu,
        sigma=sigma,
        heldout=heldout,
    )


def build_snapshot(
    source: Store | Path | str, out_dir: Path | str, config: DatasetConfig, snapshot_date: date
) -> SnapshotManifest:
    """Build (or find) the snapshot of ``source`` as of ``snapshot_date`` under ``out_dir``.

    ``source`` is an open `Store` or the path of a DuckDB file (opened read-only). Returns the
    manifest; the folder is ``out_dir / manifest.snapshot_id``. Raises ValueError when there are
    too few eligible users for the held-out splits.
    """
    cutoff = _cutoff(snapshot_date)
    with _reading(source) as connection:
        corpus = build_corpus(
            connection, corpus_size=config.corpus_size, excluded_ratings=config.excluded_ratings, cutoff=cutoff
        )
        usernames, columns = _eligible_entries(connection, config, cutoff)
    user_of_row = columns["user_index"]  # [n] ascending
    indptr = np.zeros(len(usernames) + 1, np.int64)
    np.cumsum(np.bincount(user_of_row, minlength=len(usernames)), out=indptr[1:])
    batch = profile_features(indptr, columns["anime_id"], columns["status"], columns["score"], corpus)
    split = split_users(len(usernames), config.n_validation_users, config.n_test_users, config.seed)
    splits = {name: _split_arrays(batch, usernames, split, which, config) for which, name in enumerate(SPLIT_NAMES)}
    source_counts = {"rows_read": int(len(user_of_row)), "eligible_users": len(usernames), **batch.ignored_counts()}
    return write_snapshot(Path(out_dir), splits, corpus, config, snapshot_date.isoformat(), source_counts)
