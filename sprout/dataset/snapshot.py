"""`build_snapshot`: cut an immutable, content-addressed training snapshot from the store.

SQL does the heavy lifting (corpus counts, the user filter); the eligible users' rows stream out
of DuckDB into compact CSR columns (`user_rows`), and `features.profile_features` applies the
entry rules and the normalisation to a chunk of users at a time — the same code serving runs on
one profile. Users are independent, so the chunk size changes peak memory, never the snapshot:
one store gives the same arrays, bytes and id whatever the chunking.

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

from sprout.store import Store
from sprout.store.retention import WITHDRAWN_USERS_SQL

from .config import DatasetConfig
from .corpus import Corpus, build_corpus
from .features import IGNORED_REASONS, PLAN_TO_WATCH, normalised_values, owners, profile_features
from .snapshot_format import (
    Snapshot,
    SnapshotError,
    SnapshotManifest,
    SplitArrays,
    load_snapshot,
    write_snapshot,
)
from .splits import SPLIT_NAMES, TRAIN, UserSplit, holdout_mask, split_users
from .user_rows import UserRows, read_user_rows

__all__ = ["Snapshot", "SnapshotError", "SnapshotManifest", "SplitArrays", "build_snapshot", "load_snapshot", "snapshot_cutoff"]

# Rows featurised at once. Temporaries cost ~150 bytes a row, so 4M rows hold ~0.6 GB beside the
# 10 bytes a row of the streamed store rows and the snapshot's own arrays.
DEFAULT_CHUNK_ROWS = 4_000_000

# Per split, what the chunks contribute: held-out users are normalised again once their entries
# are split into fold-in and held-out (the held-out draw runs over the whole split at once).
_TRAIN_COLUMNS = ("sizes", "items", "values", "rated", "scores", "mu", "sigma")
_HELD_OUT_COLUMNS = ("sizes", "items", "scores", "status")
_PER_USER = ("sizes", "mu", "sigma")


def snapshot_cutoff(snapshot_date: date) -> datetime:
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


def _featurised_splits(
    rows: UserRows, split: UserSplit, corpus: Corpus, config: DatasetConfig, chunk_rows: int
) -> tuple[dict[str, SplitArrays], dict[str, int]]:
    """Every split's arrays, and the entries ignored by reason, featurising ``chunk_rows`` rows at
    a time. Users are independent, so a chunk's features equal those of a whole-store batch;
    pieces are kept per split in user order and joined at the end."""
    pieces: dict[int, dict[str, list[np.ndarray]]] = {
        which: {name: [] for name in (_TRAIN_COLUMNS if which == TRAIN else _HELD_OUT_COLUMNS)}
        for which in range(len(SPLIT_NAMES))
    }
    ignored = dict.fromkeys(IGNORED_REASONS.values(), 0)
    for start, end in rows.chunks(chunk_rows):
        batch = profile_features(*rows.chunk(start, end), corpus)
        for reason, count in batch.ignored_counts().items():
            ignored[reason] += count
        in_split = split.assignment[start:end]  # [u]
        entry_split = in_split[owners(batch.indptr)]  # [m]
        for which, columns in pieces.items():
            users, entries = in_split == which, entry_split == which
            for name, parts in columns.items():
                array = getattr(batch, name) if name != "sizes" else np.diff(batch.indptr)
                parts.append(array[users] if name in _PER_USER else array[entries])
        del batch, entry_split
    splits = {
        name: _split_arrays(_joined(pieces.pop(which)), [rows.usernames[u] for u in split.users(which).tolist()],
                            which, config)
        for which, name in enumerate(SPLIT_NAMES)
    }
    return splits, ignored


def _joined(columns: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    """Each column's pieces as one array, releasing the pieces column by column (peak: the
    pieces plus one joined column, not twice everything)."""
    joined = {}
    for name in list(columns):
        joined[name] = np.concatenate(columns.pop(name))
    return joined


def _split_arrays(
    columns: dict[str, np.ndarray], usernames: list[str], which: int, config: DatasetConfig
) -> SplitArrays:
    """One split's arrays from its users' features; held-out users get a fold-in / held-out split
    and are normalised with fold-in scores only (held-out scores must not leak into mu and sigma)."""
    indptr = np.zeros(len(columns["sizes"]) + 1, np.int64)
    np.cumsum(columns["sizes"], out=indptr[1:])
    items, scores = columns["items"], columns["scores"]
    if which == TRAIN:
        heldout = None
        values, rated, mu, sigma = columns["values"], columns["rated"], columns["mu"], columns["sigma"]
    else:
        heldout = holdout_mask(indptr, config.holdout_fraction, config.seed, split=which)  # [n_s]
        values, rated, mu, sigma = normalised_values(indptr, scores, columns["status"], counted=~heldout)
    return SplitArrays(
        usernames=tuple(usernames),
        indptr=indptr,
        items=items,
        values=values,
        rated=rated,
        scores=scores,
        mu=mu,
        sigma=sigma,
        heldout=heldout,
    )


def counted_entries(rows: UserRows) -> np.ndarray:
    """Entries that count (all but plan-to-watch) of each user. [U] int64"""
    counted = (rows.status != PLAN_TO_WATCH).astype(np.int64)  # [n]
    totals = np.concatenate([[0], np.cumsum(counted)])
    return totals[rows.indptr[1:]] - totals[rows.indptr[:-1]]


def newest_entry_day(connection: duckdb.DuckDBPyConnection) -> date:
    """The UTC day of the most recently updated list entry: the default snapshot date."""
    newest = connection.execute("SELECT max(updated_at) FROM list_entries").fetchall()[0][0]
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
    source: Store | Path | str,
    out_dir: Path | str,
    config: DatasetConfig,
    snapshot_date: date | None = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> SnapshotManifest:
    """Build (or find) the snapshot of ``source`` as of ``snapshot_date`` (default: the newest
    entry's day) under ``out_dir``.

    ``source`` is an open `Store` or the path of a DuckDB file (opened read-only). Returns the
    manifest; the folder is ``out_dir / manifest.snapshot_id``. Raises ValueError when there are
    too few eligible users for the held-out splits, saying which filter removed them.
    ``chunk_rows`` bounds the rows featurised at once (memory only: the snapshot is the same).
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    with _reading(source) as connection:
        snapshot_date = snapshot_date if snapshot_date is not None else newest_entry_day(connection)
        cutoff = snapshot_cutoff(snapshot_date)
        corpus = build_corpus(
            connection, corpus_size=config.corpus_size, excluded_ratings=config.excluded_ratings, cutoff=cutoff
        )
        rows = read_user_rows(connection, config, cutoff)
        needed = 3 * max(config.n_validation_users, config.n_test_users)
        if rows.n_users < needed:
            raise ValueError(f"{rows.n_users:,} users are eligible for a snapshot: "
                             + _why_too_few(connection, config, cutoff, needed))
    holdable = counted_entries(rows) >= config.min_evaluation_entries  # [U] may be a validation or test user
    split = split_users(rows.n_users, config.n_validation_users, config.n_test_users, config.seed, holdable)
    splits, ignored = _featurised_splits(rows, split, corpus, config, chunk_rows)
    source_counts = {"rows_read": rows.n_rows, "eligible_users": rows.n_users, **ignored}
    del rows  # the raw rows are not needed while the snapshot is written
    return write_snapshot(Path(out_dir), splits, corpus, config, snapshot_date.isoformat(), source_counts)
