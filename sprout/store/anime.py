"""Anime metadata and relations: bulk upserts and the choice of what to refresh next.

Every function runs inside the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import duckdb
import pyarrow as pa

from sprout.mal.models import AnimeDetails

from .database import UTC_TIMESTAMP, as_utc, registered

ANIME_SCHEMA = pa.schema(
    [
        ("anime_id", pa.int32()),
        ("title", pa.string()),
        ("media_type", pa.string()),
        ("rating", pa.string()),
        ("start_date", pa.string()),
        ("mean", pa.float64()),
        ("popularity", pa.int32()),
        ("num_list_users", pa.int32()),
        ("num_episodes", pa.int32()),
        ("genres", pa.list_(pa.string())),
        ("alternative_titles", pa.string()),  # JSON text
        ("fetched_at", UTC_TIMESTAMP),
        ("main_picture", pa.string()),  # the cover's URL (large, else medium), or null
    ]
)
RELATION_SCHEMA = pa.schema([("anime_id", pa.int32()), ("related_id", pa.int32()), ("relation_type", pa.string())])
_COLUMNS = [field.name for field in ANIME_SCHEMA]
_UPDATES = ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS[1:])


def upsert_anime(connection: duckdb.DuckDBPyConnection, details: list[AnimeDetails], fetched_at: datetime) -> int:
    """Insert or replace the metadata of ``details`` and replace their relations; returns how many.

    A show given twice keeps its last version.
    """
    latest = list({item.id: item for item in details}.values())
    if not latest:
        return 0
    fetched_at = as_utc(fetched_at, "fetched_at")
    rows = [
        {
            "anime_id": item.id,
            "title": item.title,
            "media_type": item.media_type,
            "rating": item.rating,
            "start_date": item.start_date,
            "mean": item.mean,
            "popularity": item.popularity,
            "num_list_users": item.num_list_users,
            "num_episodes": item.num_episodes,
            "genres": [genre.name for genre in item.genres],
            "alternative_titles": item.alternative_titles.model_dump_json() if item.alternative_titles else None,
            "fetched_at": fetched_at,
            "main_picture": picture_url(item),
        }
        for item in latest
    ]
    relations = {(item.id, related.node.id): related.relation_type for item in latest for related in item.related_anime}
    write_anime_table(connection, pa.Table.from_pylist(rows, schema=ANIME_SCHEMA))
    replace_relations(
        connection,
        [item.id for item in latest],
        pa.Table.from_pylist(
            [{"anime_id": a, "related_id": r, "relation_type": kind} for (a, r), kind in relations.items()],
            schema=RELATION_SCHEMA,
        ),
    )
    return len(latest)


def picture_url(item: AnimeDetails) -> str | None:
    """The URL of a show's cover as the store keeps it: the large picture, else the medium one."""
    picture = item.main_picture
    if picture is None:
        return None
    return picture.large or picture.medium or None


def write_anime_table(connection: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    """Upsert rows following ``ANIME_SCHEMA`` (one row per anime_id)."""
    columns = ", ".join(_COLUMNS)
    with registered(connection, incoming_anime=table):
        connection.execute(
            f"""
            INSERT INTO anime ({columns})
            SELECT * REPLACE (alternative_titles::JSON AS alternative_titles) FROM incoming_anime
            ON CONFLICT (anime_id) DO UPDATE SET {_UPDATES}
            """
        )


def replace_relations(connection: duckdb.DuckDBPyConnection, anime_ids: list[int], relations: pa.Table) -> None:
    """The relations of ``anime_ids`` become exactly ``relations`` (``RELATION_SCHEMA``)."""
    ids = pa.table({"anime_id": pa.array(anime_ids, pa.int32())})
    with registered(connection, refreshed_ids=ids, incoming_relations=relations):
        connection.execute("DELETE FROM anime_relations WHERE anime_id IN (SELECT anime_id FROM refreshed_ids)")
        connection.execute("INSERT INTO anime_relations SELECT * FROM incoming_relations")


def anime_needing_refresh(
    connection: duckdb.DuckDBPyConnection, now: datetime, max_age: timedelta, limit: int
) -> list[int]:
    """Shows on someone's list with no metadata or metadata fetched before ``now - max_age``,
    the most listed first (they matter most to the corpus)."""
    rows = connection.execute(
        """
        SELECT le.anime_id
        FROM list_entries le LEFT JOIN anime a USING (anime_id)
        WHERE a.anime_id IS NULL OR a.fetched_at < ?
        GROUP BY le.anime_id
        ORDER BY count(*) DESC, le.anime_id
        LIMIT ?
        """,
        [as_utc(now, "now") - max_age, max(int(limit), 0)],
    ).fetchall()
    return [anime_id for (anime_id,) in rows]
