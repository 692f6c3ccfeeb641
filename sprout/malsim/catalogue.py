"""The simulator's show catalogue: static metadata per show plus the list-derived statistics.

Shows are indexed in title order (then id), so that a user's entries, stored in show-index order,
are already in the API's default listing order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

MEDIA_TYPES = ("tv", "movie", "ova", "special", "ona", "music")
AGE_RATINGS = ("g", "pg", "pg_13", "r", "r+", "rx")
RELATION_NAMES = {
    "prequel": "Prequel",
    "sequel": "Sequel",
    "side_story": "Side story",
    "parent_story": "Parent story",
    "alternative_version": "Alternative version",
}
# The reverse of each relation, so that every link is stored in both directions.
RELATION_INVERSE = {
    "prequel": "sequel",
    "sequel": "prequel",
    "side_story": "parent_story",
    "parent_story": "side_story",
    "alternative_version": "alternative_version",
}
GENRE_NAMES = {
    1: "Action", 2: "Adventure", 3: "Cars", 4: "Comedy", 5: "Avant Garde", 6: "Demons", 7: "Mystery",
    8: "Drama", 9: "Ecchi", 10: "Fantasy", 11: "Game", 12: "Hentai", 13: "Historical", 14: "Horror",
    15: "Kids", 16: "Magic", 17: "Martial Arts", 18: "Mecha", 19: "Music", 20: "Parody", 21: "Samurai",
    22: "Romance", 23: "School", 24: "Sci-Fi", 25: "Shoujo", 26: "Girls Love", 27: "Shounen",
    28: "Boys Love", 29: "Space", 30: "Sports", 31: "Super Power", 32: "Vampire", 35: "Harem",
    36: "Slice of Life", 37: "Supernatural", 38: "Military", 39: "Police", 40: "Psychological",
    41: "Thriller", 42: "Seinen", 43: "Josei",
}  # fmt: skip


@dataclass(frozen=True)
class Catalogue:
    """Static metadata, one entry per show, in title order."""

    ids: np.ndarray  # [n_shows] int64 MAL anime ids
    titles: tuple[str, ...]
    media_types: tuple[str, ...]
    ratings: tuple[str, ...]  # age rating: g, pg, pg_13, r, r+, rx
    genres: tuple[tuple[int, ...], ...]  # genre ids per show
    genre_names: dict[int, str]
    num_episodes: np.ndarray  # [n_shows] int32, 0 = unknown
    start_dates: tuple[str | None, ...]
    relations: tuple[tuple[tuple[int, str], ...], ...]  # per show: (other show index, relation type)

    @property
    def n_shows(self) -> int:
        return len(self.ids)

    @cached_property
    def index_of(self) -> dict[int, int]:
        return {int(anime_id): i for i, anime_id in enumerate(self.ids.tolist())}

    @cached_property
    def is_rx(self) -> np.ndarray:
        return np.array([r == "rx" for r in self.ratings], dtype=bool)  # [n_shows]

    @cached_property
    def nodes(self) -> tuple[dict, ...]:
        """The ``node`` object of every show as list and ranking items carry it."""
        return tuple(
            {"id": int(anime_id), "title": title, "main_picture": picture_for(int(anime_id))}
            for anime_id, title in zip(self.ids.tolist(), self.titles)
        )

    @classmethod
    def build(
        cls,
        ids: Sequence[int],
        titles: Sequence[str],
        media_types: Sequence[str],
        ratings: Sequence[str],
        genres: Sequence[Sequence[int]],
        num_episodes: Sequence[int],
        start_dates: Sequence[str | None],
        links: Sequence[tuple[int, int, str]] = (),
        genre_names: dict[int, str] | None = None,
    ) -> "Catalogue":
        """Sort shows into title order; ``links`` are (from, to, relation) in input positions,
        stored together with their inverse."""
        ids = np.asarray(ids, dtype=np.int64)
        order = sorted(range(len(ids)), key=lambda i: (titles[i].casefold(), int(ids[i])))
        position = np.empty(len(ids), dtype=np.int64)
        position[order] = np.arange(len(ids))
        related: list[set[tuple[int, str]]] = [set() for _ in ids]
        for source, target, kind in links:
            related[position[source]].add((int(position[target]), kind))
            related[position[target]].add((int(position[source]), RELATION_INVERSE[kind]))
        return cls(
            ids=ids[order],
            titles=tuple(titles[i] for i in order),
            media_types=tuple(media_types[i] for i in order),
            ratings=tuple(ratings[i] for i in order),
            genres=tuple(tuple(genres[i]) for i in order),
            genre_names=dict(genre_names or GENRE_NAMES),
            num_episodes=np.asarray([num_episodes[i] for i in order], dtype=np.int32),
            start_dates=tuple(start_dates[i] for i in order),
            relations=tuple(tuple(sorted(r)) for r in related),
        )


def picture_for(anime_id: int) -> dict[str, str]:
    """A stable, MAL-shaped picture URL (nothing fetches it)."""
    folder, image = anime_id % 13 + 1, 10000 + anime_id * 7
    base = f"https://cdn.myanimelist.net/images/anime/{folder}/{image}"
    return {"medium": f"{base}.jpg", "large": f"{base}l.jpg"}


@dataclass(frozen=True)
class ShowStats:
    """Statistics that follow the population: list counts, popularity rank and mean score."""

    num_list_users: np.ndarray  # [n_shows] int64
    mean: np.ndarray  # [n_shows] float64, NaN when too few scores
    popularity: np.ndarray  # [n_shows] int64 rank, 1 = most list users
    by_popularity: np.ndarray  # [n_shows] show indices, most popular first
    by_score: np.ndarray  # [n_shows] show indices, best mean first (unscored last)

    @classmethod
    def from_counts(cls, ids: np.ndarray, num_list_users: np.ndarray, mean: np.ndarray) -> "ShowStats":
        by_popularity = np.lexsort((ids, -num_list_users))
        popularity = np.empty(len(ids), dtype=np.int64)
        popularity[by_popularity] = np.arange(1, len(ids) + 1)
        by_score = np.lexsort((ids, -np.nan_to_num(mean, nan=-1.0)))
        return cls(num_list_users.astype(np.int64), mean.astype(np.float64), popularity, by_popularity, by_score)

    @classmethod
    def from_lists(
        cls, ids: np.ndarray, show: np.ndarray, score: np.ndarray, alive: np.ndarray, min_scores: int = 3
    ) -> "ShowStats":
        """Count every entry of a living user; the mean needs ``min_scores`` scores, as on MAL."""
        n = len(ids)
        counts = np.bincount(show[alive], minlength=n)  # [n_shows]
        rated = alive & (score > 0)
        n_scores = np.bincount(show[rated], minlength=n)
        totals = np.bincount(show[rated], weights=score[rated].astype(np.float64), minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n_scores >= min_scores, np.round(totals / n_scores, 2), np.nan)
        return cls.from_counts(ids, counts, mean)


DETAIL_FIELDS = (
    "id", "title", "main_picture", "alternative_titles", "start_date", "media_type", "rating",
    "genres", "mean", "popularity", "num_list_users", "num_episodes", "related_anime",
)  # fmt: skip


def detail_field(catalogue: Catalogue, stats: ShowStats, show: int, name: str):
    """One field of the anime details object, or ``None`` when MAL would leave it out."""
    if name == "id":
        return int(catalogue.ids[show])
    if name == "title":
        return catalogue.titles[show]
    if name == "main_picture":
        return catalogue.nodes[show]["main_picture"]
    if name == "alternative_titles":
        return {"synonyms": [], "en": catalogue.titles[show], "ja": ""}
    if name == "start_date":
        return catalogue.start_dates[show]
    if name == "media_type":
        return catalogue.media_types[show]
    if name == "rating":
        return catalogue.ratings[show]
    if name == "genres":
        return [{"id": g, "name": catalogue.genre_names.get(g, str(g))} for g in catalogue.genres[show]]
    if name == "mean":
        value = stats.mean[show]
        return None if np.isnan(value) else float(value)
    if name == "popularity":
        return int(stats.popularity[show])
    if name == "num_list_users":
        return int(stats.num_list_users[show])
    if name == "num_episodes":
        return int(catalogue.num_episodes[show])
    if name == "related_anime":
        return [
            {
                "node": catalogue.nodes[other],
                "relation_type": kind,
                "relation_type_formatted": RELATION_NAMES.get(kind, kind.replace("_", " ").capitalize()),
            }
            for other, kind in catalogue.relations[show]
        ]
    return None


def show_object(catalogue: Catalogue, stats: ShowStats, show: int, fields: Sequence[str]) -> dict:
    """``id``, ``title`` and ``main_picture`` always, plus each requested field MAL knows."""
    body = dict(catalogue.nodes[show])
    for name in fields:
        if name in DETAIL_FIELDS and name not in body:
            value = detail_field(catalogue, stats, show, name)
            if value is not None:
                body[name] = value
    return body
