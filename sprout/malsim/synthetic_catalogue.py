"""A synthetic show catalogue: franchises of related shows, genre-like taste clusters, Zipf-like
latent popularity and hidden quality."""

from __future__ import annotations

from bisect import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate

import numpy as np

from sprout.malsim.catalogue import AGE_RATINGS, Catalogue
from sprout.malsim.taste import ItemModel


@dataclass(frozen=True)
class Cluster:
    name: str
    genres: tuple[int, ...]  # MAL genre ids typical of the cluster, most typical first
    share: float  # fraction of franchises
    ratings: tuple[float, ...]  # probabilities over AGE_RATINGS


CLUSTERS = (
    Cluster("battle shounen", (1, 27, 31, 17, 2), 0.16, (0, 0.03, 0.77, 0.2, 0, 0)),
    Cluster("fantasy adventure", (10, 2, 16, 6, 37), 0.13, (0.02, 0.08, 0.7, 0.18, 0.02, 0)),
    Cluster("romance", (22, 23, 25, 8, 4), 0.12, (0, 0.1, 0.85, 0.05, 0, 0)),
    Cluster("slice of life", (36, 4, 23, 20), 0.12, (0.05, 0.2, 0.75, 0, 0, 0)),
    Cluster("sci-fi mecha", (24, 18, 29, 38), 0.09, (0, 0.05, 0.7, 0.25, 0, 0)),
    Cluster("dark mystery", (7, 40, 41, 42, 14, 37), 0.09, (0, 0, 0.35, 0.6, 0.05, 0)),
    Cluster("sports", (30, 23, 27), 0.05, (0.05, 0.15, 0.8, 0, 0, 0)),
    Cluster("historical drama", (8, 13, 21, 42, 43), 0.06, (0, 0.05, 0.6, 0.35, 0, 0)),
    Cluster("kids", (15, 4, 2, 16), 0.06, (0.6, 0.4, 0, 0, 0, 0)),
    Cluster("ecchi harem", (9, 35, 4, 22, 32), 0.06, (0, 0, 0.25, 0.05, 0.7, 0)),
    Cluster("music idol", (19, 36, 4), 0.03, (0.1, 0.3, 0.6, 0, 0, 0)),
    Cluster("adult", (12, 9), 0.03, (0, 0, 0, 0, 0, 1.0)),
)
ADULT_CLUSTER = len(CLUSTERS) - 1
NICHES = 4  # taste niches per genre cluster: a franchise sits in one
ZIPF_EXPONENT = 1.25  # latent popularity of the k-th franchise ∝ (k + 5) ** -ZIPF_EXPONENT

_ADJECTIVES = (
    "Crimson Silent Eternal Broken Hidden Golden Last Wandering Fallen Azure Midnight Scarlet Frozen "
    "Infinite Lonely Shining Lost Endless Violet Iron Hollow Sacred Distant Burning Quiet Little"
).split()
_NOUNS = (
    "Horizon Blade Garden Requiem Symphony Chronicle Kingdom Promise Memories Labyrinth Frontier Heart "
    "Melody Academy Knight Witch Empire Paradise Lantern Orbit Voyage Tale Sky Sword Flower Summer"
).split()
_JAPANESE = (
    "Sora Hoshi Kaze Yume Hikari Tsubasa Kokoro Sekai Mirai Kiseki Tenshi Akuma Hana Tsuki Yuki Umi "
    "Seishun Bokura Kimi Shoujo Monogatari Densetsu Senki Gakuen Kanojo Ore Ikusa Mahou"
).split()
_SUBTITLES = (
    "Final Act|Rebirth|The Beginning|Requiem|Another Story|The Movie|Reunion|Zero|Origins|"
    "Farewell|The Lost Chapter|Eclipse|Dawn|Homecoming|Crossroads"
).split("|")
_SIDE_STORY_LABELS = {"ova": "OVA", "special": "Specials", "movie": "Movie", "music": "Music Video"}


def _pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float] | None = None):
    """One option, uniformly or by weight (cheaper than ``rng.choice`` for one small draw)."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    return options[min(bisect(list(accumulate(weights)), rng.random() * sum(weights)), len(options) - 1)]


def _base_title(rng: np.random.Generator) -> str:
    adjective, noun = _pick(rng, _ADJECTIVES), _pick(rng, _NOUNS)
    word, word2 = _pick(rng, _JAPANESE), _pick(rng, _JAPANESE)
    pattern = int(rng.integers(6))
    if pattern == 0:
        return f"{adjective} {noun}"
    if pattern == 1:
        return f"{word} no {word2}"
    if pattern == 2:
        return f"{adjective} {noun} {word}"
    if pattern == 3:
        return f"The {noun} of {word}"
    if pattern == 4:
        return f"{word}!!"
    return f"{word} {noun}"


def _draw_media(rng: np.random.Generator, role: str, cluster: int) -> str:
    if cluster == ADULT_CLUSTER:
        return _pick(rng, ("ova", "ova", "tv", "special"))
    options = {
        "main": (("tv", "ona", "ova", "movie"), (0.7, 0.12, 0.08, 0.1)),
        "sequel": (("tv", "movie", "ona", "ova"), (0.65, 0.2, 0.1, 0.05)),
        "side_story": (("ova", "special", "movie", "music"), (0.4, 0.45, 0.1, 0.05)),
        "alternative_version": (("movie", "tv"), (0.5, 0.5)),
    }[role]
    return _pick(rng, *options)


def _draw_episodes(rng: np.random.Generator, media: str) -> int:
    if media == "tv":
        return _pick(rng, (12, 13, 24, 25, 26, 50, 0), (0.4, 0.15, 0.15, 0.08, 0.12, 0.05, 0.05))
    if media == "ona":
        return _pick(rng, (1, 6, 10, 12, 24, 0), (0.15, 0.15, 0.2, 0.35, 0.1, 0.05))
    if media == "ova":
        return int(rng.integers(1, 7))
    if media == "special":
        return int(rng.integers(1, 4))
    return 1  # movie, music


def _date_text(rng: np.random.Generator, year: int) -> str:
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    precision = rng.random()
    if precision < 0.03:
        return f"{year:04d}"
    if precision < 0.1:
        return f"{year:04d}-{month:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


def _sequel_title(rng: np.random.Generator, base: str, number: int, media: str) -> str:
    if media == "movie":
        return f"{base} Movie {number - 1}: {_pick(rng, _SUBTITLES)}"
    suffix = {2: "nd", 3: "rd"}.get(number, "th")
    forms = (f"{base} Season {number}", f"{base} {number}{suffix} Season")
    return _pick(rng, (*forms, f"{base}: {_pick(rng, _SUBTITLES)}"))


def synthetic_catalogue(n_shows: int, rng: np.random.Generator, latest_year: int) -> tuple[Catalogue, ItemModel]:
    """``n_shows`` shows in franchises (a main series, sequels, side stories, alternative versions)."""
    shares = tuple(c.share for c in CLUSTERS)
    titles: list[str] = []
    media: list[str] = []
    years: list[int] = []
    cluster: list[int] = []
    niches: list[int] = []
    weight: list[float] = []
    quality: list[float] = []
    parent: list[int] = []
    links: list[tuple[int, int, str]] = []
    franchise_rank = 0
    while len(titles) < n_shows:
        size = min(1 if rng.random() < 0.6 else 2 + int(rng.geometric(0.35)) - 1, 12, n_shows - len(titles))
        group = _pick(rng, range(len(CLUSTERS)), shares)
        niche = group * NICHES + int(rng.integers(NICHES))
        franchise_rank += 1
        base_weight = (franchise_rank + 5.0) ** -ZIPF_EXPONENT * rng.lognormal(0.0, 0.35)
        base_weight *= 0.3 if group == ADULT_CLUSTER else 1.0
        base_quality = rng.normal(0.0, 0.6)
        base = _base_title(rng)
        year = int(max(1970, latest_year - np.floor(rng.exponential(9.0))))
        main_line = [len(titles)]
        for member in range(size):
            index = len(titles)
            if member == 0:
                role, factor, title, link = "main", 1.0, base, None
            else:
                role = _pick(rng, ("sequel", "side_story", "alternative_version"), (0.6, 0.3, 0.1))
                if role == "sequel":
                    factor = 0.75 ** len(main_line)
                    link = (main_line[-1], index, "sequel")
                elif role == "side_story":
                    factor = 0.2
                    link = (_pick(rng, main_line), index, "side_story")
                else:
                    factor = 0.45
                    link = (_pick(rng, main_line), index, "alternative_version")
            kind = _draw_media(rng, role, group)
            if role == "sequel":
                title = _sequel_title(rng, base, len(main_line) + 1, kind)
                main_line.append(index)
            elif role == "side_story":
                title = f"{base} {_SIDE_STORY_LABELS.get(kind, kind.upper())}" + (f" {member}" if member > 1 else "")
            elif role == "alternative_version":
                title = f"{base} ({year + member})"
            titles.append(title)
            media.append(kind)
            years.append(min(latest_year, year + (member and int(rng.integers(0, 3)) + member // 2)))
            cluster.append(group)
            niches.append(niche)
            weight.append(base_weight * factor)
            quality.append(base_quality + rng.normal(0.0, 0.2) + (0.15 if role == "sequel" else 0.0))
            parent.append(link[0] if link and role in ("sequel", "side_story") else -1)
            if link:
                links.append(link)

    # MAL ids grow with time: older shows get smaller ids.
    ids = np.sort(rng.choice(np.arange(1, max(60000, 3 * n_shows)), n_shows, replace=False))
    by_age = np.argsort(np.asarray(years) + rng.random(n_shows), kind="stable")
    show_ids = np.empty(n_shows, np.int64)
    show_ids[by_age] = ids
    genres = []
    for group in cluster:
        core = CLUSTERS[group].genres
        picked = {core[0], _pick(rng, core), _pick(rng, core[:3])}
        if group != ADULT_CLUSTER and rng.random() < 0.3:
            picked.add(_pick(rng, CLUSTERS[int(rng.integers(ADULT_CLUSTER))].genres))
        genres.append(tuple(sorted(int(g) for g in picked)))
    ratings = [_pick(rng, AGE_RATINGS, CLUSTERS[g].ratings) for g in cluster]
    catalogue = Catalogue.build(
        ids=show_ids,
        titles=titles,
        media_types=media,
        ratings=ratings,
        genres=genres,
        num_episodes=[_draw_episodes(rng, m) for m in media],
        start_dates=[_date_text(rng, y) for y in years],
        links=links,
    )
    # Re-express the hidden parameters in the catalogue's (title) order.
    position = np.array([catalogue.index_of[int(i)] for i in show_ids])  # input position → index
    order = np.argsort(position)
    parent_input = np.asarray(parent)
    parent_index = np.where(parent_input >= 0, position[np.maximum(parent_input, 0)], -1)
    items = ItemModel(
        cluster=np.asarray(niches, np.int64)[order],
        weight=np.asarray(weight, np.float64)[order],
        quality=np.asarray(quality, np.float64)[order],
        parent=parent_index[order],
        n_clusters=len(CLUSTERS) * NICHES,
    )
    return catalogue, items
