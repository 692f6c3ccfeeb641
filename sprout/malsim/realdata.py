"""The simulator's real-data backend: the ``anime-5k`` data set served as MAL would serve it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path

import numpy as np

from sprout.anime5k import Anime5k, read_anime5k, username_for
from sprout.malsim.accounts import Users
from sprout.malsim.catalogue import GENRE_NAMES, Catalogue, ShowStats
from sprout.malsim.lists import COMPLETED, Lists
from sprout.malsim.population import DEFAULT_NOW, Population, State
from sprout.malsim.taste import ItemModel, UserTraits

DAY = 86400
YEAR = 365 * DAY
# Older names the data set uses for genres MAL has since renamed.
_LEGACY_GENRES = {"Dementia": 5, "Shoujo Ai": 26, "Shounen Ai": 28, "Yaoi": 33, "Yuri": 34}


def _catalogue(data: Anime5k, listed_ids: np.ndarray) -> tuple[Catalogue, np.ndarray, np.ndarray]:
    """Shows of the info file plus any listed show it lacks; also members and mean per show."""
    genre_ids = {name: gid for gid, name in GENRE_NAMES.items()} | _LEGACY_GENRES
    names = sorted({g for show in data.shows.values() for g in show.genres} - set(genre_ids))
    genre_ids |= {name: 100 + i for i, name in enumerate(names)}  # names MAL never had
    ids = sorted(set(data.shows) | set(listed_ids.tolist()))
    listed = dict(zip(*np.unique(listed_ids, return_counts=True)))
    shows = [data.shows.get(i) for i in ids]
    catalogue = Catalogue.build(
        ids=ids,
        titles=[s.title if s else f"Anime {i}" for i, s in zip(ids, shows)],
        media_types=[s.media_type if s else "unknown" for s in shows],
        ratings=[s.rating if s else "pg_13" for s in shows],
        genres=[[genre_ids[g] for g in s.genres] if s else [] for s in shows],
        num_episodes=[(s.num_episodes or 0) if s else 0 for s in shows],
        start_dates=[None] * len(ids),
        genre_names={gid: name for name, gid in genre_ids.items()},
    )
    members = {i: (s.members if s else int(listed.get(i, 0))) for i, s in zip(ids, shows)}
    means = {i: (s.mean if s and s.mean is not None else np.nan) for i, s in zip(ids, shows)}
    order = catalogue.ids.tolist()
    return catalogue, np.array([members[i] for i in order], np.int64), np.array([means[i] for i in order])


def _activity_windows(n_users: int, now: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each user's (first, last) activity: last within three years of ``now`` (most within
    months), first up to about three years before that, never earlier than 4.5 years."""
    last = now - np.minimum(rng.exponential(90 * DAY, n_users), 3 * YEAR)
    first = np.maximum(last - rng.lognormal(np.log(1.5 * YEAR), 0.6, n_users), now - 4.5 * YEAR)
    return first.astype(np.int64), last.astype(np.int64)


def _resampled_traits(base: UserTraits, n: int, rng: np.random.Generator, start: int, end: int) -> UserTraits:
    """New accounts behave like randomly chosen existing ones."""
    traits = base.take(rng.integers(0, len(base.level), n))
    return replace(traits, first_active=np.full(n, start, np.int64), last_active=np.full(n, end, np.int64))


def from_anime5k(
    directory: Path | str, *, seed: int = 0, now: datetime = DEFAULT_NOW, private_fraction: float = 0.0
) -> Population:
    """Serve ``anime-5k``: users ``username_for(user_id)``, every entry ``completed`` with the data
    set's score (0 when unrated) and all episodes watched, shows' media type, genres, mean,
    members (as ``num_list_users`` and popularity) and age rating from the info file.

    The data set has no timestamps, so ``updated_at`` is synthetic and deterministic given
    ``seed``: each user gets an activity window that ends within three years before ``now``
    (exponentially, mean 90 days) and lasts about 1.5 years (lognormal), never starting more than
    4.5 years before ``now``, so every user stays inside a five-year recency filter; each entry
    gets a uniform time within its user's window. No start or finish dates, no relations.
    """
    data = read_anime5k(directory)
    clock = int(now.timestamp())
    rng = np.random.default_rng(seed)
    catalogue, members, means = _catalogue(data, data.anime_ids)
    user_ids, owner = np.unique(data.user_ids, return_inverse=True)  # owner: [n_entries] user number
    n_users, n_entries = len(user_ids), len(owner)
    show = np.array([catalogue.index_of[int(i)] for i in data.anime_ids.tolist()], np.int64)
    first, last = _activity_windows(n_users, clock, rng)
    updated = first[owner] + np.floor(rng.random(n_entries) * (last - first)[owner]).astype(np.int64)
    columns = {
        "show": show,
        "status": np.full(n_entries, COMPLETED, np.int8),
        "score": data.scores.astype(np.int8),
        "episodes": catalogue.num_episodes[show],
        "rewatching": np.zeros(n_entries, bool),
        "updated_at": updated,
        "start_date": np.zeros(n_entries, np.int32),
        "finish_date": np.zeros(n_entries, np.int32),
    }
    lists = Lists.from_rows(owner, columns, n_users, catalogue.n_shows)

    rated = data.scores > 0
    n_rated = np.bincount(owner[rated], minlength=n_users)
    score_sum = np.bincount(owner[rated], weights=data.scores[rated], minlength=n_users)
    score_sq = np.bincount(owner[rated], weights=data.scores[rated].astype(np.float64) ** 2, minlength=n_users)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n_rated > 0, score_sum / n_rated, 7.5)
        sd = np.where(n_rated > 1, np.sqrt(np.maximum(score_sq / n_rated - mean**2, 0.25)), 1.5)
    sizes = lists.sizes()
    traits = UserTraits(
        taste=np.zeros((n_users, 1)),
        level=np.ones(n_users, np.int64),
        target_size=sizes.astype(np.int64),
        score_mean=mean,
        score_sd=sd,
        binary=np.zeros(n_users, bool),
        rate_prob=n_rated / np.maximum(sizes, 1),
        plan_prob=np.full(n_users, 0.1),
        first_active=first,
        last_active=last,
        activity=sizes / np.maximum((last - first) / DAY, 30.0) * rng.uniform(0.3, 1.5, n_users),
    )
    quality = np.nan_to_num((means - 7.5) / 1.2, nan=-0.5)
    items = ItemModel(
        cluster=np.zeros(catalogue.n_shows, np.int64),
        weight=np.maximum(members, 1).astype(np.float64),
        quality=quality,
        parent=np.full(catalogue.n_shows, -1, np.int64),
        n_clusters=1,
    )
    names = [username_for(int(u)) for u in user_ids.tolist()]
    users = Users.create(names, private=rng.random(n_users) < private_fraction, deleted=np.zeros(n_users, bool))
    stats = ShowStats.from_counts(catalogue.ids, members, means)
    state = State(lists=lists, users=users, traits=traits, stats=stats, now=clock)
    return Population(
        catalogue,
        items,
        state,
        seed=seed,
        new_traits=partial(_resampled_traits, traits),
        stats_follow_lists=False,
        private_fraction=private_fraction,
    )
