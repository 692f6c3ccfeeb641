"""The hidden taste model behind every simulated list: who watches what, and how it is scored.

A user's chance of listing show ``i`` is ``∝ weight_i ** a_u · exp(taste_u[cluster_i])``: a
popularity-following exponent ``a_u`` (one of a few levels) and an affinity per taste cluster
(genre-like groups split into niches; a show's latent vector is one-hot on its cluster).
Because a show belongs to one cluster this factorises into "pick a cluster, then a show within it
by popularity", which samples millions of entries with two vectorised ``searchsorted`` calls.
Scores rise with the same affinity and with the show's hidden quality, mapped through the user's
rating scheme. A model that recovers the clusters and the qualities can predict both; fans of a
sequel have mostly also listed what came before it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from functools import cached_property

import numpy as np

# Popularity exponents a user may follow: niche seekers, typical users, mainstream followers.
POPULARITY_EXPONENTS = (0.6, 0.9, 1.2)
# How strongly a user's cluster affinity moves their scores (in latent score units).
AFFINITY_TO_SCORE = 0.35
SCORE_NOISE = 0.55
CHUNK_USERS = 16384  # users sampled together: bounds temporary memory


@dataclass(frozen=True)
class ItemModel:
    """Hidden per-show parameters."""

    cluster: np.ndarray  # [n_shows] int64 taste cluster of each show
    weight: np.ndarray  # [n_shows] float64 latent popularity, > 0
    quality: np.ndarray  # [n_shows] float64 how well liked on average (latent score units)
    parent: np.ndarray  # [n_shows] int64 prequel or parent story, -1 for none
    n_clusters: int

    @property
    def n_shows(self) -> int:
        return len(self.cluster)

    @cached_property
    def order(self) -> np.ndarray:
        return np.argsort(self.cluster, kind="stable")  # [n_shows] shows grouped by cluster

    @cached_property
    def cluster_mass(self) -> np.ndarray:
        """Σ weight^a per (exponent level, cluster); 0 for an empty cluster."""
        powered = self.weight[None, :] ** np.asarray(POPULARITY_EXPONENTS)[:, None]  # [L, n_shows]
        mass = np.stack([np.bincount(self.cluster, weights=p, minlength=self.n_clusters) for p in powered])
        return mass  # [L, K]

    @cached_property
    def stacked_cdf(self) -> tuple[np.ndarray, np.ndarray]:
        """Within-cluster CDFs for every (level, cluster) group, offset by the group number so that
        one ``searchsorted(cdf, group + u)`` picks a show; also each group's end position."""
        k, n = self.n_clusters, self.n_shows
        cluster_sorted = self.cluster[self.order]  # [n]
        starts = np.searchsorted(cluster_sorted, np.arange(k))  # [K]
        ends = np.searchsorted(cluster_sorted, np.arange(k), side="right")
        blocks, group_end = [], []
        for level, exponent in enumerate(POPULARITY_EXPONENTS):
            w = self.weight[self.order] ** exponent  # [n]
            running = np.cumsum(w)
            before = np.where(starts > 0, running[np.maximum(starts - 1, 0)], 0.0)  # [K]
            mass = np.maximum(running[np.maximum(ends - 1, 0)] - before, 1e-300)
            within = (running - before[cluster_sorted]) / mass[cluster_sorted]  # [n] in (0, 1]
            within[ends[ends > starts] - 1] = 1.0
            blocks.append(level * k + cluster_sorted + within)
            group_end.append(level * n + ends)
        return np.concatenate(blocks), np.concatenate(group_end)  # [L * n], [L * K]


@dataclass(frozen=True)
class UserTraits:
    """Hidden per-user parameters (row ``u`` belongs to user ``u``)."""

    taste: np.ndarray  # [n_users, n_clusters] float64 affinity per cluster
    level: np.ndarray  # [n_users] int64 index into POPULARITY_EXPONENTS
    target_size: np.ndarray  # [n_users] int64 shows the user means to list
    score_mean: np.ndarray  # [n_users] float64 centre of the rating scheme
    score_sd: np.ndarray  # [n_users] float64 spread of the rating scheme
    binary: np.ndarray  # [n_users] bool: scores only 1 or 10
    rate_prob: np.ndarray  # [n_users] float64 chance an entry gets a score
    plan_prob: np.ndarray  # [n_users] float64 chance an entry is plan-to-watch
    first_active: np.ndarray  # [n_users] int64 epoch seconds
    last_active: np.ndarray  # [n_users] int64 epoch seconds
    activity: np.ndarray  # [n_users] float64 list edits per day from now on

    def take(self, rows: np.ndarray) -> "UserTraits":
        return replace(self, **{f.name: getattr(self, f.name)[rows] for f in fields(self)})

    def concat(self, other: "UserTraits") -> "UserTraits":
        return replace(
            self, **{f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)}
        )


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a plain sort, much faster than ``np.unique`` on large int arrays)."""
    ordered = np.sort(values)
    if len(ordered) == 0:
        return ordered
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]


def _draw_once(
    items: ItemModel, traits: UserTraits, users: np.ndarray, counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``counts[j]`` shows with replacement for each ``users[j]``; returns keys j * n + show."""
    k, n = items.n_clusters, items.n_shows
    level = traits.level[users]  # [m]
    with np.errstate(divide="ignore"):
        logits = np.log(items.cluster_mass[level]) + traits.taste[users]  # [m, K]
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    cum = np.cumsum(prob / prob.sum(axis=1, keepdims=True), axis=1)  # [m, K]
    cum[:, -1] = 1.0
    owner = np.repeat(np.arange(len(users)), counts)  # [d]
    flat = (np.arange(len(users))[:, None] + cum).ravel()  # [m * K], increasing
    pick = np.searchsorted(flat, owner + rng.random(len(owner)) * (1 - 1e-12), side="right")
    cluster = np.minimum(pick, owner * k + k - 1) - owner * k  # [d]
    cdf, group_end = items.stacked_cdf
    group = level[owner] * k + cluster  # [d]
    position = np.searchsorted(cdf, group + rng.random(len(owner)) * (1 - 1e-12), side="right")
    position = np.minimum(position, group_end[group] - 1)
    show = items.order[position % n]  # [d]
    return owner.astype(np.int64) * n + show


def sample_shows(
    items: ItemModel,
    traits: UserTraits,
    users: np.ndarray,
    counts: np.ndarray,
    rng: np.random.Generator,
    follow_franchise: float = 0.7,
) -> tuple[np.ndarray, np.ndarray]:
    """About ``counts[j]`` distinct shows for each ``users[j]`` (more when prequels are pulled in,
    fewer when the user's taste runs out of shows). Returns (user, show) rows sorted by both."""
    n = items.n_shows
    out_users, out_shows = [], []
    for start in range(0, len(users), CHUNK_USERS):
        chunk, target = users[start : start + CHUNK_USERS], counts[start : start + CHUNK_USERS]
        keys = sorted_unique(_draw_once(items, traits, chunk, target, rng))
        for _ in range(5):  # top up users whose draws repeated themselves
            have = np.bincount(keys // n, minlength=len(chunk))
            short = np.flatnonzero(target - have > np.maximum(1, target // 50))
            if len(short) == 0:
                break
            extra = _draw_once(items, traits, chunk[short], (target - have)[short] * 2 + 1, rng)
            extra = short[extra // n] * n + extra % n  # back to this chunk's row numbers
            keys = sorted_unique(np.concatenate([keys, extra]))
        for _ in range(2):  # fans of a sequel have mostly seen what came before it
            parent = items.parent[keys % n]
            follow = (parent >= 0) & (rng.random(len(keys)) < follow_franchise)
            keys = sorted_unique(np.concatenate([keys, (keys[follow] // n) * n + parent[follow]]))
        out_users.append(chunk[keys // n])
        out_shows.append(keys % n)
    if not out_users:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_users), np.concatenate(out_shows)


def expected_affinity(items: ItemModel, traits: UserTraits, users: slice) -> np.ndarray:
    """Mean affinity of users over the shows they tend to pick, so that scores centre on the
    rating scheme although users mostly watch what they like."""
    taste = traits.taste[users]  # [m, K]
    with np.errstate(divide="ignore"):
        logits = np.log(items.cluster_mass[traits.level[users]]) + taste
    prob = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (prob * taste).sum(axis=1) / prob.sum(axis=1)  # [m]


def latent_scores(
    items: ItemModel, traits: UserTraits, users: np.ndarray, shows: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """How much each user likes each show, before the rating scheme (≈ standard normal)."""
    k = items.n_clusters
    own = traits.taste.ravel()[users * k + items.cluster[shows]]  # [d] affinity to the show's cluster
    if len(users) == 0:
        return np.zeros(0)
    low = int(users.min())  # callers pass contiguous blocks of users, or few users
    centre = expected_affinity(items, traits, slice(low, int(users.max()) + 1))
    affinity = own - centre[users - low]  # [d] relative to a typical pick
    return AFFINITY_TO_SCORE * affinity + items.quality[shows] + SCORE_NOISE * rng.standard_normal(len(users))


def scheme_scores(traits: UserTraits, users: np.ndarray, latent: np.ndarray) -> np.ndarray:
    """Map latent liking through each user's rating scheme onto 1..10."""
    graded = np.clip(np.rint(traits.score_mean[users] + traits.score_sd[users] * latent), 1, 10)
    return np.where(traits.binary[users], np.where(latent > 0.2, 10, 1), graded).astype(np.int8)
