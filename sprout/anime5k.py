"""Reader for the ``anime-5k`` data set format (real MAL data, tab-separated, one header line).

Files: ``anime_history.dat`` (user, show, 1), ``anime_ratings.dat`` (user, show, score 1-10),
``anime_info.dat`` (show id, name, genres, type, episodes, mean rating, members).
The data set has no statuses, timestamps or age ratings; the conventions that fill them are here
so that the importer and the simulator's real-data backend agree.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

HISTORY_FILE = "anime_history.dat"
RATINGS_FILE = "anime_ratings.dat"
INFO_FILE = "anime_info.dat"

# Shows tagged with this genre count as MAL's "rx" age rating (the data set has no rating field).
RX_GENRE = "Hentai"
_KEY_BASE = 1 << 32
MEDIA_TYPES = {"TV": "tv", "OVA": "ova", "Special": "special", "Movie": "movie", "ONA": "ona", "Music": "music"}


def username_for(user_id: int) -> str:
    """The username a data-set user gets in the platform."""
    return f"user{int(user_id):05d}"


@dataclass(frozen=True)
class Show:
    anime_id: int
    title: str
    genres: tuple[str, ...]
    media_type: str
    num_episodes: int | None
    mean: float | None
    members: int

    @property
    def rating(self) -> str:
        return "rx" if RX_GENRE in self.genres else "pg_13"


@dataclass(frozen=True)
class Anime5k:
    """The whole data set: one row per watched (user, show) pair, score 0 when unrated."""

    user_ids: np.ndarray  # [n_entries] int64, sorted by user then show
    anime_ids: np.ndarray  # [n_entries] int64
    scores: np.ndarray  # [n_entries] int16, 0 = unrated
    shows: dict[int, Show]

    @property
    def n_users(self) -> int:
        return int(np.unique(self.user_ids).size)

    def popularity_rank(self) -> dict[int, int]:
        """MAL-style popularity: 1 for the show with the most members."""
        order = sorted(self.shows.values(), key=lambda s: (-s.members, s.anime_id))
        return {s.anime_id: rank for rank, s in enumerate(order, start=1)}


def _read_triples(path: Path) -> np.ndarray:
    columns = duckdb.sql(
        "SELECT * FROM read_csv(?, delim='\\t', header=true, all_varchar=false)", params=[str(path)]
    ).fetchnumpy()
    if len(columns) != 3:
        raise ValueError(f"{path}: expected 3 tab-separated columns, found {len(columns)}")
    return np.stack([np.asarray(c, dtype=np.int64) for c in columns.values()], axis=1)  # [n, 3]


def _read_info(path: Path) -> dict[int, Show]:
    shows: dict[int, Show] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows, None)
        for row in rows:
            if len(row) < 7:
                continue
            anime_id, name, genres, kind, episodes, mean, members = row[:7]
            shows[int(anime_id)] = Show(
                anime_id=int(anime_id),
                title=name,
                genres=tuple(g.strip() for g in genres.split(",") if g.strip()),
                media_type=MEDIA_TYPES.get(kind, kind.lower() or "unknown"),
                num_episodes=int(episodes) if episodes.isdigit() else None,
                mean=float(mean) if mean.replace(".", "", 1).isdigit() else None,
                members=int(members) if members.isdigit() else 0,
            )
    return shows


def read_anime5k(directory: Path | str) -> Anime5k:
    """Load the data set; raises FileNotFoundError naming the missing file."""
    directory = Path(directory)
    for name in (HISTORY_FILE, RATINGS_FILE, INFO_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} not found: not an anime-5k folder")
    history = _read_triples(directory / HISTORY_FILE)  # [n, 3] user, show, 1
    ratings = _read_triples(directory / RATINGS_FILE)  # [m, 3] user, show, score
    # One key per (user, show) pair; a rating fills the score of its pair (first rating wins).
    history_keys = history[:, 0] * _KEY_BASE + history[:, 1]  # [n]
    rating_keys = ratings[:, 0] * _KEY_BASE + ratings[:, 1]  # [m]
    keys = np.unique(np.concatenate([history_keys, rating_keys]))  # [k] sorted by user, show
    rated_keys, first = np.unique(rating_keys, return_index=True)
    scores = np.zeros(len(keys), dtype=np.int16)
    scores[np.searchsorted(keys, rated_keys)] = np.clip(ratings[first, 2], 0, 10)
    return Anime5k(
        user_ids=keys // _KEY_BASE,
        anime_ids=keys % _KEY_BASE,
        scores=scores,
        shows=_read_info(directory / INFO_FILE),
    )
