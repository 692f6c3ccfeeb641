"""Load a simulated population straight into a store's tables, for tests and benchmarks.

The crawler is the real way in; this is bulk setup that skips the HTTP round trips: the
population's columnar lists become Arrow tables that DuckDB inserts without a Python loop.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa

from sprout.mal.models import LIST_STATUSES
from sprout.malsim.catalogue import picture_for
from sprout.malsim.population import Population
from sprout.store import Store
from sprout.store.database import UTC_TIMESTAMP, as_utc


def _timestamps(epoch_seconds: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(epoch_seconds, dtype=np.int64) * 1_000_000, pa.int64()).cast(UTC_TIMESTAMP)


def population_tables(
    population: Population, now: datetime, *, picture_base: str | None = None
) -> dict[str, pa.Table]:
    """``users``, ``list_entries`` and ``anime`` rows of the living accounts, in table column order.

    Shows get the pictures a simulator at ``picture_base`` (``http://127.0.0.1:PORT``) serves, as
    a crawl through it would store them; none without one."""
    state, catalogue = population.state, population.catalogue
    lists, accounts = state.lists, state.users
    living = np.flatnonzero(~accounts.deleted)  # [U_living]
    sizes = lists.sizes()  # [U]
    rows = np.repeat(~accounts.deleted, sizes)  # [n] entry of a living account
    user_of_row = np.repeat(np.arange(lists.n_users, dtype=np.int32), sizes)[rows]  # [n_living]
    names = pa.array(accounts.names, pa.string())
    n = len(user_of_row)
    now_ts = pa.scalar(as_utc(now), UTC_TIMESTAMP)
    entries = pa.table(
        {
            "username": pa.DictionaryArray.from_arrays(pa.array(user_of_row), names).cast(pa.string()),
            "anime_id": pa.array(catalogue.ids[lists.show[rows]].astype(np.int32)),
            "status": pa.DictionaryArray.from_arrays(
                pa.array(lists.status[rows].astype(np.int32)), pa.array(LIST_STATUSES, pa.string())
            ).cast(pa.string()),
            "score": pa.array(lists.score[rows].astype(np.int16)),
            "num_episodes_watched": pa.array(lists.episodes[rows]),
            "is_rewatching": pa.array(lists.rewatching[rows]),
            "updated_at": _timestamps(lists.updated_at[rows]),
            "start_date": pa.nulls(n, pa.string()),
            "finish_date": pa.nulls(n, pa.string()),
            "first_seen_at": pa.repeat(now_ts, n),
        }
    )
    users = pa.table(
        {
            "username": pa.array([accounts.names[u] for u in living.tolist()], pa.string()),
            "discovered_at": pa.repeat(now_ts, len(living)),
            "source": pa.repeat("synthetic", len(living)),
            "discovery_order": pa.array(np.arange(len(living), dtype=np.int64)),
        }
    )
    genre_names = [[catalogue.genre_names[g] for g in genres] for genres in catalogue.genres]
    anime = pa.table(
        {
            "anime_id": pa.array(catalogue.ids.astype(np.int32)),
            "title": pa.array(catalogue.titles, pa.string()),
            "media_type": pa.array(catalogue.media_types, pa.string()),
            "rating": pa.array(catalogue.ratings, pa.string()),
            "start_date": pa.array(catalogue.start_dates, pa.string()),
            "mean": pa.nulls(catalogue.n_shows, pa.float64()),
            "popularity": pa.nulls(catalogue.n_shows, pa.int32()),
            "num_list_users": pa.nulls(catalogue.n_shows, pa.int32()),
            "num_episodes": pa.array(catalogue.num_episodes.astype(np.int32)),
            "genres": pa.array(genre_names, pa.list_(pa.string())),
            "alternative_titles": pa.nulls(catalogue.n_shows, pa.string()),
            "fetched_at": pa.repeat(now_ts, catalogue.n_shows),
            "main_picture": pa.array(
                [picture_for(a, picture_base)["large"] for a in catalogue.ids.tolist()]
                if picture_base is not None
                else [None] * catalogue.n_shows,
                pa.string(),
            ),
        }
    )
    return {"users": users, "list_entries": entries, "anime": anime}


def load_population(
    store: Store, population: Population, now: datetime, *, picture_base: str | None = None
) -> dict[str, int]:
    """Insert the population into an empty store in one transaction, as a first full crawl at
    ``now`` would leave it (every user's crawl state too, so a later crawl diffs against the
    stored lists); returns rows per table (``picture_base``: see `population_tables`)."""
    tables = population_tables(population, now, picture_base=picture_base)
    with store.transaction() as connection:
        for name, table in tables.items():
            connection.from_arrow(table).insert_into(name)
        connection.execute(
            """
            INSERT INTO crawl_state (username, state, http_status, attempts, last_crawl_at, next_due_at,
                                     high_water_mark, last_full_refresh_at, entries)
            SELECT u.username, 'ok', 200, 0, $now, $now, max(e.updated_at), $now, count(e.anime_id)
            FROM users u LEFT JOIN list_entries e USING (username) GROUP BY u.username
            """,
            {"now": as_utc(now)},
        )
    return {name: table.num_rows for name, table in tables.items()}
