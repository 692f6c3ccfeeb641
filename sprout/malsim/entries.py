"""Turn (user, show) pairs into full list entries: status, score, episodes, timestamps, dates."""

from __future__ import annotations

import numpy as np

from sprout.malsim.lists import (
    COMPLETED,
    DROPPED,
    FULL_DATE,
    ON_HOLD,
    PLAN_TO_WATCH,
    WATCHING,
    YEAR_MONTH,
    YEAR_ONLY,
    pack_dates,
)
from sprout.malsim.taste import ItemModel, UserTraits, latent_scores, scheme_scores

DAY = 86400
# Without a known episode count a started show is assumed to be a one-cour series.
UNKNOWN_EPISODES = 12
DROPPED_SCORE_SHIFT = -1.2


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def draw_statuses(
    traits: UserTraits, users: np.ndarray, latent: np.ndarray, rng: np.random.Generator, fresh: bool
) -> np.ndarray:
    """Mostly completed; dropping is likelier for shows the user likes less. ``fresh`` entries
    (just added) are more often planned or in progress."""
    plan_prob = np.full(len(users), 0.3) if fresh else traits.plan_prob[users]
    watching_prob = 0.25 if fresh else 0.05
    planned = rng.random(len(users)) < plan_prob
    drop_prob = 0.03 + 0.15 * _sigmoid(-1.8 * latent - 1.8)  # [d]
    r = rng.random(len(users))
    status = np.full(len(users), COMPLETED, dtype=np.int8)
    status[r < drop_prob + watching_prob + 0.035] = ON_HOLD
    status[r < drop_prob + watching_prob] = WATCHING
    status[r < drop_prob] = DROPPED
    status[planned] = PLAN_TO_WATCH
    return status


def draw_scores(
    traits: UserTraits, users: np.ndarray, latent: np.ndarray, status: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Scores through the user's scheme; plan-to-watch is never scored, shows in progress less often."""
    shifted = np.where(status == DROPPED, latent + DROPPED_SCORE_SHIFT, latent)
    rate_prob = traits.rate_prob[users] * np.where(np.isin(status, (WATCHING, ON_HOLD)), 0.6, 1.0)
    rated = (status != PLAN_TO_WATCH) & (rng.random(len(users)) < rate_prob)
    return np.where(rated, scheme_scores(traits, users, shifted), 0).astype(np.int8)


def draw_episodes(status: np.ndarray, total: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """All episodes when completed, none when planned, part of them otherwise."""
    known = np.where(total > 0, total, UNKNOWN_EPISODES)  # [d]
    partial = np.minimum(np.floor(rng.random(len(status)) * known).astype(np.int64), known - 1)
    partial = np.where(status == WATCHING, partial, np.maximum(partial, np.minimum(1, known - 1)))
    episodes = np.where(status == COMPLETED, total, partial)
    return np.where(status == PLAN_TO_WATCH, 0, episodes).astype(np.int32)


def draw_precision(rng: np.random.Generator, n: int) -> np.ndarray:
    """Most dates are full; some users only remember the month or the year."""
    return rng.choice(np.array([FULL_DATE, YEAR_MONTH, YEAR_ONLY]), size=n, p=[0.85, 0.1, 0.05])


def draw_dates(
    status: np.ndarray, total: np.ndarray, updated_at: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Optional start and finish dates (packed) consistent with status and update time."""
    n = len(status)
    day = updated_at // DAY  # [d]
    span = np.maximum(total, 1) * rng.uniform(0.2, 3.0, n)  # days spent watching
    finished = (status == COMPLETED) & (rng.random(n) < 0.45)
    finish_day = day - np.floor(rng.exponential(10.0, n)).astype(np.int64)
    started = np.where(status == COMPLETED, finished & (rng.random(n) < 0.9), rng.random(n) < 0.4)
    started &= status != PLAN_TO_WATCH
    start_day = np.where(finished, finish_day, day) - np.floor(span).astype(np.int64)
    precision = draw_precision(rng, n)
    start = pack_dates(start_day, np.where(started, precision, 0))
    finish = pack_dates(finish_day, np.where(finished, precision, 0))
    return start, finish


def draw_entries(
    items: ItemModel,
    traits: UserTraits,
    num_episodes: np.ndarray,
    users: np.ndarray,
    shows: np.ndarray,
    time_from: np.ndarray,
    time_to: np.ndarray,
    rng: np.random.Generator,
    fresh: bool = False,
) -> dict[str, np.ndarray]:
    """List columns for (user, show) rows, updated uniformly within [time_from, time_to]."""
    latent = latent_scores(items, traits, users, shows, rng)  # [d]
    status = draw_statuses(traits, users, latent, rng, fresh)
    total = num_episodes[shows].astype(np.int64)
    episodes = draw_episodes(status, total, rng)
    updated = time_from + np.floor(rng.random(len(users)) * np.maximum(time_to - time_from, 1)).astype(np.int64)
    start, finish = draw_dates(status, total, updated, rng)
    return {
        "show": shows.astype(np.int32),
        "status": status,
        "score": draw_scores(traits, users, latent, status, rng),
        "episodes": episodes,
        "rewatching": (status == COMPLETED) & (rng.random(len(users)) < 0.01),
        "updated_at": updated,
        "start_date": start,
        "finish_date": finish,
    }
