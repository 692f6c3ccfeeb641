"""Loading the anime-5k data set (real MAL lists, see `sprout.anime5k`) into the store's schema.

The whole set goes through the same set-based write as crawled lists (one full write per user),
built straight from the reader's numpy arrays, so importing is exact, idempotent and takes
seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from sprout.anime5k import Anime5k, read_anime5k, username_for

from .anime import ANIME_SCHEMA, write_anime_table
from .database import UTC_TIMESTAMP, as_utc, scalar
from .entries import ENTRY_SCHEMA, WRITE_SCHEMA, write_tables

if TYPE_CHECKING:
    from .store import Store

SOURCE = "anime-5k"
# The data set's publication date: it has no timestamps, and its lists are at least this old.
PUBLISHED_AT = datetime(2016, 12, 21, tzinfo=UTC)
# Imported users are never due: the data set's users do not exist on MAL under these names.
NEVER_DUE = datetime(9999, 1, 1, tzinfo=UTC)


def import_anime5k(
    store: Store, directory: Path | str, *, updated_at: datetime = PUBLISHED_AT, now: datetime
) -> dict[str, int]:
    """Load the anime-5k set at ``directory`` into ``store`` in one transaction; returns counts.

    Users are named with `username_for` (source 'anime-5k'). Every pair becomes a 'completed'
    entry with the pair's score (0 when unrated), the show's episode count as episodes watched
    (0 when unknown) and ``updated_at`` as its timestamp: the data set has none, and the default
    is its publication date, 2016-12-21. Users get crawl state 'ok', never due again, with
    high-water mark ``updated_at``. Shows come from the info file with ``fetched_at = now``.
    Importing again gives the same rows (and reports zero changes).
    """
    data = read_anime5k(directory)
    with store.transaction() as connection:
        return load_anime5k(connection, data, updated_at=updated_at, now=now)


def load_anime5k(
    connection: duckdb.DuckDBPyConnection, data: Anime5k, *, updated_at: datetime, now: datetime
) -> dict[str, int]:
    """`import_anime5k` for data already read, inside the caller's transaction."""
    updated_at, now = as_utc(updated_at, "updated_at"), as_utc(now, "now")
    users_before = scalar(connection, "SELECT count(*) FROM users")
    write_anime_table(connection, _anime_table(data, now))
    entries, writes = _list_tables(data, updated_at, now)
    counts = write_tables(connection, entries, writes, SOURCE)
    users_after = scalar(connection, "SELECT count(*) FROM users")
    return {
        "users": writes.num_rows,
        "new_users": users_after - users_before,
        "entries": entries.num_rows,
        "scored": int(np.count_nonzero(data.scores)),
        "added": sum(c.added for c in counts),
        "changed": sum(c.changed for c in counts),
        "deleted": sum(c.deleted for c in counts),
        "anime": len(data.shows),
    }


def _list_tables(data: Anime5k, updated_at: datetime, now: datetime) -> tuple[pa.Table, pa.Table]:
    """Entries and one full write per user, vectorised over the reader's arrays."""
    n = len(data.anime_ids)
    user_ids, user_of_entry = np.unique(data.user_ids, return_inverse=True)  # [n_users], [n]
    names = pa.array([username_for(user_id) for user_id in user_ids], pa.string())
    write_index = pa.array(user_of_entry.astype(np.int32))
    show_ids = np.array(sorted(data.shows), dtype=np.int64)  # [n_shows]
    # One extra slot of 0 episodes for shows missing from the info file.
    episodes = np.array([data.shows[i].num_episodes or 0 for i in show_ids] + [0], dtype=np.int32)
    known = np.isin(data.anime_ids, show_ids)  # [n]
    position = np.where(known, np.searchsorted(show_ids, data.anime_ids), len(show_ids))  # [n]
    entries = pa.Table.from_arrays(
        [
            pa.array(np.arange(n, dtype=np.int32)),
            pa.DictionaryArray.from_arrays(write_index, names).cast(pa.string()),
            pa.array(data.anime_ids.astype(np.int32)),
            pa.repeat("completed", n),
            pa.array(data.scores.astype(np.int16)),
            pa.array(episodes[position]),
            pa.array(np.zeros(n, dtype=bool)),
            pa.array(np.full(n, np.datetime64(updated_at.replace(tzinfo=None), "us")), UTC_TIMESTAMP),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.string()),
        ],
        schema=ENTRY_SCHEMA,
    )
    n_users = len(user_ids)
    writes = pa.Table.from_arrays(
        [
            names,
            pa.repeat(True, n_users),
            pa.array([now] * n_users, UTC_TIMESTAMP),
            pa.array([NEVER_DUE] * n_users, UTC_TIMESTAMP),
            pa.nulls(n_users, pa.int32()),  # not fetched over HTTP
        ],
        schema=WRITE_SCHEMA,
    )
    return entries, writes


def _anime_table(data: Anime5k, fetched_at: datetime) -> pa.Table:
    popularity = data.popularity_rank()
    shows = sorted(data.shows.values(), key=lambda show: show.anime_id)
    return pa.Table.from_pylist(
        [
            {
                "anime_id": show.anime_id,
                "title": show.title,
                "media_type": show.media_type,
                "rating": show.rating,
                "start_date": None,
                "mean": show.mean,
                "popularity": popularity[show.anime_id],
                "num_list_users": show.members,
                "num_episodes": show.num_episodes,
                "genres": list(show.genres),
                "alternative_titles": None,
                "fetched_at": fetched_at,
                "main_picture": None,  # the data set has no pictures
            }
            for show in shows
        ],
        schema=ANIME_SCHEMA,
    )
