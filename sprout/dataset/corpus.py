"""The corpus: the shows a model knows, most-listed first (docs/design.md §4).

Counted in SQL over every list row (all statuses) up to the snapshot cutoff, minus the rows of
users who went private or deleted their account, and minus shows whose age rating is excluded;
shows without metadata are kept (they have no rating).
It is versioned with the snapshot and travels with every model as plain JSON, together with
each show's direct predecessors (its prequels and parent stories), which serving needs to hide
sequels of shows the user has not seen, and its picture and year, which answers show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np

from sprout.store.retention import WITHDRAWN_USERS_SQL

_CORPUS_SQL = f"""
WITH counts AS (
    SELECT anime_id, count(*) AS n_lists
    FROM list_entries
    WHERE updated_at < $cutoff AND username NOT IN ({WITHDRAWN_USERS_SQL})
    GROUP BY anime_id
), predecessors AS (
    -- (anime_id X, related_id Y, 'prequel') means Y is X's prequel: X directly follows Y.
    SELECT anime_id, list(related_id ORDER BY related_id) AS ids
    FROM anime_relations
    WHERE relation_type IN ('prequel', 'parent_story')
    GROUP BY anime_id
)
SELECT c.anime_id, c.n_lists, coalesce(a.title, '') AS title, a.media_type,
       coalesce(a.genres, []::VARCHAR[]) AS genres, coalesce(p.ids, []::INTEGER[]) AS predecessors,
       a.main_picture AS picture,
       try_cast(left(a.start_date, 4) AS INTEGER) AS year  -- YYYY, YYYY-MM or YYYY-MM-DD
FROM counts c LEFT JOIN anime a USING (anime_id) LEFT JOIN predecessors p USING (anime_id)
WHERE a.rating IS NULL OR NOT list_contains($excluded, a.rating)
ORDER BY c.n_lists DESC, c.anime_id
LIMIT $corpus_size
"""


@dataclass(frozen=True)
class Corpus:
    """Shows by corpus index (0 = most listed), with what display and popularity need."""

    anime_ids: np.ndarray  # [C] int64
    counts: np.ndarray  # [C] int64 list rows per show: popularity
    titles: tuple[str, ...]
    media_types: tuple[str | None, ...]
    genres: tuple[tuple[str, ...], ...]
    # Per show, the anime ids it directly follows (prequels, parent stories; in the corpus or not).
    # Empty when unknown, as in corpora written before relations were recorded.
    predecessors: tuple[tuple[int, ...], ...] = ()
    # Per show, the URL of its picture and the year it started (None when unknown). Empty in
    # corpora written before they were recorded.
    pictures: tuple[str | None, ...] = ()
    years: tuple[int | None, ...] = ()

    def __post_init__(self) -> None:
        if self.predecessors and len(self.predecessors) != len(self.anime_ids):
            raise ValueError("predecessors must be empty or give one tuple per corpus show")
        for name in ("pictures", "years"):
            if getattr(self, name) and len(getattr(self, name)) != len(self.anime_ids):
                raise ValueError(f"{name} must be empty or give one value per corpus show")
        order = np.argsort(self.anime_ids, kind="stable")
        if len(order) > 1 and not bool(np.all(np.diff(self.anime_ids[order]) > 0)):
            raise ValueError("corpus anime ids must be unique")
        object.__setattr__(self, "_sorted_ids", self.anime_ids[order])  # for vectorised lookups
        object.__setattr__(self, "_sorted_positions", order.astype(np.int32))

    def __len__(self) -> int:
        return len(self.anime_ids)

    def positions(self, anime_ids: np.ndarray) -> np.ndarray:
        """Corpus index of each id, -1 for a show outside the corpus."""
        anime_ids = np.asarray(anime_ids, dtype=np.int64)  # [n]
        sorted_ids: np.ndarray = self._sorted_ids  # type: ignore[attr-defined]
        if len(sorted_ids) == 0:
            return np.full(len(anime_ids), -1, np.int32)
        slot = np.minimum(np.searchsorted(sorted_ids, anime_ids), len(sorted_ids) - 1)  # [n]
        found = sorted_ids[slot] == anime_ids
        return np.where(found, self._sorted_positions[slot], -1).astype(np.int32)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        return {
            "anime_ids": self.anime_ids.tolist(),
            "counts": self.counts.tolist(),
            "titles": list(self.titles),
            "media_types": list(self.media_types),
            "genres": [list(g) for g in self.genres],
            "predecessors": [list(p) for p in self.predecessors],
            "pictures": list(self.pictures),
            "years": list(self.years),
        }

    def to_json(self) -> str:
        """Canonical text (it is hashed into the snapshot id)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Corpus:
        return cls(
            anime_ids=np.asarray(data["anime_ids"], dtype=np.int64),
            counts=np.asarray(data["counts"], dtype=np.int64),
            titles=tuple(data["titles"]),
            media_types=tuple(data["media_types"]),
            genres=tuple(tuple(g) for g in data["genres"]),
            predecessors=tuple(tuple(int(i) for i in p) for p in data.get("predecessors", ())),
            pictures=tuple(None if p is None else str(p) for p in data.get("pictures", ())),
            years=tuple(None if y is None else int(y) for y in data.get("years", ())),
        )

    @classmethod
    def from_json(cls, text: str) -> Corpus:
        return cls.from_dict(json.loads(text))


def build_corpus(
    connection: duckdb.DuckDBPyConnection,
    *,
    corpus_size: int,
    excluded_ratings: tuple[str, ...] | list[str],
    cutoff: datetime,
) -> Corpus:
    """The top ``corpus_size`` shows by list rows updated before ``cutoff`` (ties: lower id),
    with each show's direct predecessors from the stored relations, its picture and the year
    of its start date."""
    rows = connection.execute(
        _CORPUS_SQL,
        {"cutoff": cutoff, "excluded": list(excluded_ratings), "corpus_size": corpus_size},
    ).fetchall()
    return Corpus(
        anime_ids=np.array([r[0] for r in rows], dtype=np.int64),
        counts=np.array([r[1] for r in rows], dtype=np.int64),
        titles=tuple(r[2] for r in rows),
        media_types=tuple(r[3] for r in rows),
        genres=tuple(tuple(r[4]) for r in rows),
        predecessors=tuple(tuple(r[5]) for r in rows),
        pictures=tuple(r[6] for r in rows),
        years=tuple(r[7] for r in rows),
    )
