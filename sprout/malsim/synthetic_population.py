"""A seeded synthetic population that looks like MAL data and hides a learnable taste structure.

Profile sizes are lognormal (median ≈ 56, tail into the thousands); users follow one of five
rating schemes (typical, generous ≈ 8 with low spread, "objective" ≈ 5, binary 1/10, rarely or
never rating); activity spans years and many accounts have lapsed. Each user likes a few of the
genre clusters (two favourites) and, within each, some niches more than others; see ``taste`` for
how that decides what they list and how they score it. Generating 200,000 users (~18M entries)
takes about 25 s and 1.2 GB on two cores; `synthetic_population_blocks` generates larger
populations a block of users at a time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime, timezone
from functools import partial

import numpy as np

from sprout.malsim.accounts import Users
from sprout.malsim.catalogue import Catalogue, ShowStats
from sprout.malsim.entries import draw_entries
from sprout.malsim.lists import COLUMNS, DTYPES, Lists
from sprout.malsim.population import DEFAULT_NOW, Population, State
from sprout.malsim.synthetic_catalogue import ADULT_CLUSTER, CLUSTERS, NICHES, synthetic_catalogue
from sprout.malsim.taste import CHUNK_USERS, POPULARITY_EXPONENTS, ItemModel, UserTraits, sample_shows
from sprout.malsim.usernames import draw_usernames

DAY = 86400
YEAR = 365 * DAY
MAL_OPENED = int(datetime(2005, 1, 1, tzinfo=timezone.utc).timestamp())
MEDIAN_PROFILE = 41  # before prequels are pulled in; lands the final median near 56
PROFILE_SPREAD = 1.1  # lognormal sigma of profile sizes
MAX_PROFILE = 2500
ADULT_FANS = 0.06  # share of users who seek out rx shows
TASTE_SPREAD = 1.5  # spread of users' affinity to genre clusters
FAVOURITE_BOOST = (2.5, 1.2)  # extra affinity to each user's two favourite clusters
NICHE_SPREAD = 1.2  # spread of affinity to the niches within a cluster

# Rating schemes: share of users, score centre range, score spread range, rating probability range.
SCHEMES = {
    "typical": (0.45, (7.0, 8.0), (1.1, 1.7), (0.8, 1.0)),
    "generous": (0.2, (7.8, 8.4), (0.5, 0.8), (0.85, 1.0)),
    "objective": (0.13, (4.8, 5.6), (1.6, 2.2), (0.9, 1.0)),
    "binary": (0.04, (5.5, 5.5), (0.0, 0.0), (0.7, 1.0)),
    "sparse": (0.18, (7.0, 8.0), (1.0, 1.6), (0.0, 0.15)),
}


def draw_traits(
    n: int,
    rng: np.random.Generator,
    window_start: int,
    window_end: int,
    *,
    n_clusters: int = len(CLUSTERS) * NICHES,
    max_profile: int = MAX_PROFILE,
    active_since: int = MAL_OPENED,
) -> UserTraits:
    """Hidden traits of ``n`` users whose activity ends within [window_start, window_end]; most
    were recently active, about a third lapsed years ago (unless the window is in the future)."""
    broad = TASTE_SPREAD * rng.standard_normal((n, len(CLUSTERS)))  # [n, C] taste per genre cluster
    favourite = rng.integers(0, ADULT_CLUSTER, (n, 2))  # two favourite clusters, never the adult one
    rows = np.arange(n)
    broad[rows, favourite[:, 0]] += FAVOURITE_BOOST[0]
    broad[rows, favourite[:, 1]] += FAVOURITE_BOOST[1]
    adult_fan = rng.random(n) < ADULT_FANS
    broad[:, ADULT_CLUSTER] = np.where(adult_fan, 1.8, -3.5) + 0.5 * rng.standard_normal(n)
    # Within a genre cluster, users also differ on its niches.
    taste = np.repeat(broad, n_clusters // len(CLUSTERS), axis=1)  # [n, K]
    taste += NICHE_SPREAD * rng.standard_normal(taste.shape)

    names = list(SCHEMES)
    shares = np.array([SCHEMES[s][0] for s in names])
    scheme = rng.choice(len(names), n, p=shares / shares.sum())

    def per_scheme(field: int) -> np.ndarray:
        low = np.array([SCHEMES[s][field][0] for s in names])[scheme]
        high = np.array([SCHEMES[s][field][1] for s in names])[scheme]
        return rng.uniform(low, high)

    rate_prob = per_scheme(3)
    rate_prob = np.where((scheme == names.index("sparse")) & (rng.random(n) < 0.5), 0.0, rate_prob)

    lapsed = rng.random(n) < 0.35
    recent_end = window_end - rng.exponential(60 * DAY, n)
    lapsed_end = window_end - rng.uniform(0.5 * YEAR, 9 * YEAR, n)
    last_active = np.clip(np.where(lapsed, lapsed_end, recent_end), window_start, window_end).astype(np.int64)
    span = rng.lognormal(np.log(2.5 * YEAR), 0.7, n)
    first_active = np.maximum(last_active - span, min(active_since, window_start)).astype(np.int64)

    size = np.clip(np.rint(rng.lognormal(np.log(MEDIAN_PROFILE), PROFILE_SPREAD, n)), 1, max_profile)
    active_days = np.maximum((last_active - first_active) / DAY, 30.0)
    activity = size / active_days * np.where(lapsed, 0.02, rng.uniform(0.5, 2.0, n))
    return UserTraits(
        taste=taste,
        level=rng.choice(len(POPULARITY_EXPONENTS), n, p=[0.25, 0.5, 0.25]).astype(np.int64),
        target_size=size.astype(np.int64),
        score_mean=per_scheme(1),
        score_sd=per_scheme(2),
        binary=scheme == names.index("binary"),
        rate_prob=rate_prob,
        plan_prob=rng.beta(1.2, 7.0, n),
        first_active=first_active,
        last_active=last_active,
        activity=activity,
    )


def synthetic_population(
    n_users: int,
    seed: int = 0,
    n_anime: int = 8000,
    *,
    private_fraction: float = 0.02,
    deleted_fraction: float = 0.0,
    now: datetime = DEFAULT_NOW,
) -> Population:
    """A deterministic population of ``n_users`` over ``n_anime`` shows.

    The catalogue depends on ``seed`` and ``n_anime`` only, so populations of different sizes
    with the same seed share their shows.
    """
    if n_users < 0 or n_anime < 1:
        raise ValueError("n_users must be >= 0 and n_anime >= 1")
    catalogue, items, user_seeds = _catalogue_and_user_seeds(seed, n_anime, now)
    return _population(catalogue, items, n_users, user_seeds, seed, private_fraction, deleted_fraction, now)


def _catalogue_and_user_seeds(
    seed: int, n_anime: int, now: datetime
) -> tuple[Catalogue, ItemModel, list[np.random.SeedSequence]]:
    """The catalogue of ``seed`` and ``n_anime`` and the seeds of the (first) users' streams."""
    catalogue_seed, *user_seeds = np.random.SeedSequence(seed).spawn(4)
    catalogue, items = synthetic_catalogue(n_anime, np.random.default_rng(catalogue_seed), latest_year=now.year)
    return catalogue, items, user_seeds


def synthetic_population_blocks(
    n_users: int,
    block_users: int,
    seed: int = 0,
    n_anime: int = 8000,
    *,
    private_fraction: float = 0.02,
    deleted_fraction: float = 0.0,
    now: datetime = DEFAULT_NOW,
) -> Iterator[Population]:
    """``n_users`` users as populations of at most ``block_users`` each over one shared catalogue:
    populations too large to hold at once, generated a block at a time.

    The first block is exactly ``synthetic_population(min(n_users, block_users), seed, n_anime)``.
    One random stream runs through a whole population, so a later block cannot continue it
    without redrawing everything before; block ``b`` draws its users from a stream of its own
    (seeded by ``[seed, b]``) instead, and its names avoid every earlier block's, so the blocks
    together are one deterministic population with unique (case-insensitive) names.
    """
    if n_users < 0 or block_users < 1 or n_anime < 1:
        raise ValueError("n_users must be >= 0, block_users >= 1 and n_anime >= 1")
    catalogue, items, first_seeds = _catalogue_and_user_seeds(seed, n_anime, now)
    taken: set[str] = set()
    for block, start in enumerate(range(0, n_users, block_users)):
        user_seeds = first_seeds if block == 0 else np.random.SeedSequence([seed, block]).spawn(3)
        population = _population(
            catalogue, items, min(block_users, n_users - start), user_seeds, seed, private_fraction,
            deleted_fraction, now, taken,
        )
        taken.update(name.casefold() for name in population.state.users.names)
        yield population


def _population(
    catalogue: Catalogue,
    items: ItemModel,
    n_users: int,
    seeds: list[np.random.SeedSequence],
    seed: int,
    private_fraction: float,
    deleted_fraction: float,
    now: datetime,
    taken_names: Collection[str] = (),
) -> Population:
    """``n_users`` users over a catalogue, drawn from ``seeds`` (users, names, flags)."""
    user_seed, name_seed, flag_seed = seeds
    clock = int(now.timestamp())
    max_profile = min(MAX_PROFILE, catalogue.n_shows)
    rng = np.random.default_rng(user_seed)
    traits = draw_traits(n_users, rng, clock - 10 * YEAR, clock, max_profile=max_profile)
    sizes, parts = np.zeros(n_users, np.int64), []
    for start in range(0, n_users, CHUNK_USERS):  # chunks bound the temporaries' memory
        users = np.arange(start, min(start + CHUNK_USERS, n_users))
        owner, shows = sample_shows(items, traits, users, traits.target_size[users], rng)  # sorted
        first, last = traits.first_active[owner], traits.last_active[owner]
        parts.append(draw_entries(items, traits, catalogue.num_episodes, owner, shows, first, last, rng))
        sizes += np.bincount(owner, minlength=n_users)
    # Concatenate column by column, releasing each chunk's piece as it is copied.
    columns = {
        c: np.concatenate([np.zeros(0, DTYPES[c])] + [part.pop(c).astype(DTYPES[c]) for part in parts])
        for c in COLUMNS
    }
    lists = Lists(np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), **columns)
    flags = np.random.default_rng(flag_seed)
    users = Users.create(
        draw_usernames(n_users, np.random.default_rng(name_seed), taken_names),
        private=flags.random(n_users) < private_fraction,
        deleted=flags.random(n_users) < deleted_fraction,
    )
    alive = ~users.deleted[lists.owners()]
    stats = ShowStats.from_lists(catalogue.ids, lists.show, lists.score, alive)
    state = State(lists=lists, users=users, traits=traits, stats=stats, now=clock)
    new_traits = partial(draw_traits, max_profile=max_profile)
    return Population(
        catalogue, items, state, seed=seed, new_traits=new_traits, private_fraction=private_fraction
    )
