"""The simulator's show catalogue: static metadata per show plus the list-derived statistics.

Shows are indexed in title order (then id), so that a user's entries, stored in show-index order,
are already in the API's default listing order.
"""

from __future__ import annotations

import html
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
    def _nodes_by_base(self) -> dict[str, tuple[dict, ...]]:
        return {}

    def nodes(self, base: str) -> tuple[dict, ...]:
        """The ``node`` object of every show as list and ranking items carry it, its pictures on
        the simulator at ``base`` (the scheme and host a request came to: see `request_base`).

        Built once per base and kept for the few bases a server answers on (loopback names);
        two threads asking at once at worst both build the same nodes."""
        cache = self._nodes_by_base
        nodes = cache.get(base)
        if nodes is None:
            nodes = tuple(
                {"id": int(anime_id), "title": title, "main_picture": picture_for(int(anime_id), base)}
                for anime_id, title in zip(self.ids.tolist(), self.titles)
            )
            while len(cache) >= _NODE_BASES_KEPT:  # a Host header is the client's to choose
                cache.pop(next(iter(cache)), None)
            cache[base] = nodes
        return nodes

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


_NODE_BASES_KEPT = 4
PICTURE_PATH = "/images/anime/{anime_id}{size}.svg"  # size "" (medium) or "l" (large), as MAL names them
PICTURE_SIZES = {"": (225, 320), "l": (450, 640)}  # width, height in pixels


def picture_for(anime_id: int, base: str) -> dict[str, str]:
    """A show's MAL-shaped ``main_picture``: URLs of the covers the simulator at ``base``
    (``http://127.0.0.1:8765``, no trailing slash) serves itself (`cover_svg`)."""
    return {
        size_name: base + PICTURE_PATH.format(anime_id=int(anime_id), size=size)
        for size_name, size in (("medium", ""), ("large", "l"))
    }


def cover_svg(catalogue: Catalogue, show: int, size: str = "") -> str:
    """A tiny generated cover for ``show``: a colour of its own and the title's first letter."""
    width, height = PICTURE_SIZES[size]
    anime_id = int(catalogue.ids[show])
    hue = anime_id * 137 % 360
    title = catalogue.titles[show].strip()
    letter = html.escape(title[:1].upper() or "?")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 225 320">'
        f'<rect width="225" height="320" fill="hsl({hue},45%,42%)"/>'
        f'<rect x="12" y="12" width="201" height="296" fill="none" stroke="hsl({hue},45%,75%)" stroke-width="3"/>'
        f'<text x="112.5" y="190" font-family="sans-serif" font-size="120" font-weight="700" '
        f'fill="hsl({hue},60%,92%)" text-anchor="middle">{letter}</text></svg>'
    )


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


def detail_field(catalogue: Catalogue, stats: ShowStats, show: int, name: str, *, base: str):
    """One field of the anime details object, or ``None`` when MAL would leave it out; pictures
    point at the simulator at ``base``."""
    if name == "id":
        return int(catalogue.ids[show])
    if name == "title":
        return catalogue.titles[show]
    if name == "main_picture":
        return catalogue.nodes(base)[show]["main_picture"]
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
                "node": catalogue.nodes(base)[other],
                "relation_type": kind,
                "relation_type_formatted": RELATION_NAMES.get(kind, kind.replace("_", " ").capitalize()),
            }
            for other, kind in catalogue.relations[show]
        ]
    return None


def show_object(catalogue: Catalogue, stats: ShowStats, show: int, fields: Sequence[str], *, base: str) -> dict:
    """``id``, ``title`` and ``main_picture`` always, plus each requested field MAL knows."""
    body = dict(catalogue.nodes(base)[show])
    for name in fields:
        if name in DETAIL_FIELDS and name not in body:
            value = detail_field(catalogue, stats, show, name, base=base)
            if value is not None:
                body[name] = value
    return body
