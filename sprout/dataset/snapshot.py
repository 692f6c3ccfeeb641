"""`build_snapshot`: cut an immutable, content-addressed training snapshot from the store.

SQL does the heavy lifting (corpus counts, the user filter, fetching the rows of eligible users
as columns); `features.profile_features` then applies the entry rules and the normalisation to
the whole batch at once — the same code serving runs on one profile.

Reproducibility: only entries updated on or before ``snapshot_date`` (UTC) are read, and the
activity window counts back from that date, never from today. Without a date the snapshot is
taken as of the newest entry's day, so it depends on the data only: the same data gives the
same snapshot id on any day (an import stamped with its publication date included). Users who
are private or gone now are left out whatever the date (their consent is read at build time),
so rebuilding an old date after one withdrew yields a different snapshot id.

Too few users left is a `ValueError` that says which filter removed them and what changes it.
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
from sprout.store.retention import WITHDRAWN_USERS_SQL

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

# Users who went private or deleted their account are left out at once, whatever the date.
_ELIGIBLE_USERS_SQL = f"""
SELECT username
FROM list_entries
WHERE updated_at < $cutoff AND username NOT IN ({WITHDRAWN_USERS_SQL})
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


def newest_entry_day(connection: duckdb.DuckDBPyConnection) -> date:
    """The UTC day of the most recently updated list entry: the default snapshot date."""
    newest = connection.execute("SELECT max(updated_at) FROM list_entries").fetchone()[0]
    if newest is None:
        raise ValueError("the store has no list entries yet: crawl (`sprout crawl`) or import (`sprout import`) first")
    return newest.astimezone(UTC).date()


def _why_too_few(connection: duckdb.DuckDBPyConnection, config: DatasetConfig, cutoff: datetime, needed: int) -> str:
    """Which filter left too few users, how many it removed, and the option that changes it."""
    active_since = cutoff - timedelta(days=config.activity_window_days)
    counts = connection.execute(
        f"""
        WITH users AS (
            SELECT username,
                   count(*) FILTER (WHERE status <> 'plan_to_watch') AS counted,
                   max(updated_at) AS newest,
                   username IN ({WITHDRAWN_USERS_SQL}) AS withdrawn
            FROM list_entries WHERE updated_at < $cutoff GROUP BY username
        )
        SELECT count(*), count(*) FILTER (WHERE withdrawn),
               count(*) FILTER (WHERE NOT withdrawn AND newest < $active_since),
               count(*) FILTER (WHERE NOT withdrawn AND newest >= $active_since AND counted < $min_counted)
        FROM users
        """,
        {"cutoff": cutoff, "active_since": active_since, "min_counted": config.min_counted_entries},
    ).fetchone()
    listed, withdrawn, inactive, short = (int(c or 0) for c in counts)
    day = (cutoff - timedelta(days=1)).date().isoformat()
    lines = [f"{listed:,} users have entries up to {day}, and {needed:,} are needed (validation + test users, at "
             "most a third of all)."]
    if listed == 0:
        lines.append("No entry is dated on or before the snapshot date: choose a later --date.")
    if inactive:
        lines.append(f"The activity window removed {inactive:,} (newest entry before {active_since.date()}): "
                     "choose a --date nearer their entries or widen activity_window_days.")
    if short:
        lines.append(f"min_counted_entries = {config.min_counted_entries} removed {short:,} with fewer counted "
                     "entries (plan-to-watch does not count): lower it or gather more users.")
    if withdrawn:
        lines.append(f"{withdrawn:,} went private or deleted their account and are left out by design.")
    return " ".join(lines)


def build_snapshot(
    source: Store | Path | str, out_dir: Path | str, config: DatasetConfig, snapshot_date: date | None = None
) -> SnapshotManifest:
    """Build (or find) the snapshot of ``source`` as of ``snapshot_date`` (default: the newest
    entry's day) under ``out_dir``.

    ``source`` is an open `Store` or the path of a DuckDB file (opened read-only). Returns the
    manifest; the folder is ``out_dir / manifest.snapshot_id``. Raises ValueError when there are
    too few eligible users for the held-out splits, saying which filter removed them.
    """
    with _reading(source) as connection:
        snapshot_date = snapshot_date if snapshot_date is not None else newest_entry_day(connection)
        cutoff = _cutoff(snapshot_date)
        corpus = build_corpus(
            connection, corpus_size=config.corpus_size, excluded_ratings=config.excluded_ratings, cutoff=cutoff
        )
        usernames, columns = _eligible_entries(connection, config, cutoff)
        needed = 3 * max(config.n_validation_users, config.n_test_users)
        if len(usernames) < needed:
            raise ValueError(f"{len(usernames):,} users are eligible for a snapshot: "
                             + _why_too_few(connection, config, cutoff, needed))
    user_of_row = columns["user_index"]  # [n] ascending
    indptr = np.zeros(len(usernames) + 1, np.int64)
    np.cumsum(np.bincount(user_of_row, minlength=len(usernames)), out=indptr[1:])
    batch = profile_features(indptr, columns["anime_id"], columns["status"], columns["score"], corpus)
    split = split_users(len(usernames), config.n_validation_users, config.n_test_users, config.seed)
    splits = {name: _split_arrays(batch, usernames, split, which, config) for which, name in enumerate(SPLIT_NAMES)}
    source_counts = {"rows_read": int(len(user_of_row)), "eligible_users": len(usernames), **batch.ignored_counts()}
    return write_snapshot(Path(out_dir), splits, corpus, config, snapshot_date.isoformat(), source_counts)
