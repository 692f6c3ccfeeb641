"""Moving the simulated clock: users add shows, edit entries, delete entries; accounts appear.

Each living user makes ``Poisson(activity · days)`` list events in the window. About half add a
show; the rest touch an existing entry, and one touch in eight deletes it. Edits follow a
watcher's progress (planned → watching → completed or dropped, rescoring, rewatching) and set
``updated_at`` inside the window; deletions leave no trace in any timestamp, so only a full
listing reveals them. All of it is vectorised over the whole population.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from sprout.malsim.entries import UNKNOWN_EPISODES, draw_entries, draw_precision, draw_scores
from sprout.malsim.lists import COLUMNS, COMPLETED, DROPPED, DTYPES, ON_HOLD, PLAN_TO_WATCH, WATCHING, Lists, pack_dates
from sprout.malsim.taste import latent_scores, sample_shows, sorted_unique
from sprout.malsim.usernames import draw_usernames

if TYPE_CHECKING:
    from sprout.malsim.population import Population, State

DAY = 86400
ADD_SHARE = 0.55  # of list events
DELETE_SHARE = 0.125  # of the events that touch an existing entry


def _rows_of(lists: Lists, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All rows of the given users and the owner of each."""
    lengths = lists.sizes()[users]  # [m]
    owner = np.repeat(users, lengths)
    first = np.repeat(lists.offsets[users] - (np.cumsum(lengths) - lengths), lengths)
    return first + np.arange(int(lengths.sum())), owner


def _edit(population: Population, state: State, rows: np.ndarray, start: int, end: int, rng) -> dict:
    """New values of the edited rows (every column but ``show``)."""
    lists, traits = state.lists, state.traits
    owner = np.searchsorted(lists.offsets, rows, side="right") - 1  # [m]
    show = lists.show[rows]
    old_status, old_score = lists.status[rows], lists.score[rows]
    old_episodes = lists.episodes[rows].astype(np.int64)
    total = population.catalogue.num_episodes[show].astype(np.int64)
    r = rng.random(len(rows))

    status = old_status.copy()
    status[old_status == PLAN_TO_WATCH] = np.where(r < 0.6, WATCHING, COMPLETED)[old_status == PLAN_TO_WATCH]
    watching = old_status == WATCHING
    status[watching] = np.select([r < 0.55, r < 0.9, r < 0.95], [COMPLETED, WATCHING, DROPPED], ON_HOLD)[watching]
    status[old_status == ON_HOLD] = np.where(r < 0.5, WATCHING, DROPPED)[old_status == ON_HOLD]
    status[old_status == DROPPED] = np.where(r < 0.3, WATCHING, DROPPED)[old_status == DROPPED]

    known = np.where(total > 0, total, UNKNOWN_EPISODES + old_episodes)
    progressed = np.minimum(old_episodes + rng.integers(1, 6, len(rows)), np.maximum(known - 1, 0))
    all_episodes = np.where(total > 0, total, old_episodes)
    episodes = np.where(status == COMPLETED, all_episodes, np.where(status == WATCHING, progressed, old_episodes))

    fresh = draw_scores(traits, owner, latent_scores(population.items, traits, owner, show, rng), status, rng)
    nudged = np.clip(old_score + rng.choice([-1, 1], len(rows)), 1, 10)
    nudged = np.where(traits.binary[owner] | (old_score == 0), fresh, np.where(r < 0.6, nudged, old_score))
    settled = np.isin(status, (COMPLETED, DROPPED))
    first_settled = np.where(old_score > 0, old_score, fresh)  # keep a score given while watching
    score = np.where(settled, np.where(status == old_status, nudged, first_settled), old_score)

    rewatching = lists.rewatching[rows] & (status == COMPLETED)
    toggle = (old_status == COMPLETED) & (status == COMPLETED) & (rng.random(len(rows)) < 0.3)
    rewatching = np.where(toggle, ~rewatching, rewatching)

    updated = start + 1 + np.floor(rng.random(len(rows)) * max(end - start - 1, 0)).astype(np.int64)
    precision = draw_precision(rng, len(rows))
    today = pack_dates(updated // DAY, precision)
    begun = (old_status == PLAN_TO_WATCH) & (status != PLAN_TO_WATCH) & (rng.random(len(rows)) < 0.5)
    finished = (status == COMPLETED) & (old_status != COMPLETED) & (rng.random(len(rows)) < 0.45)
    return {
        "status": status,
        "score": score.astype(np.int8),
        "episodes": episodes.astype(np.int32),
        "rewatching": rewatching,
        "updated_at": updated,
        "start_date": np.where(begun & (lists.start_date[rows] == 0), today, lists.start_date[rows]),
        "finish_date": np.where(finished, today, lists.finish_date[rows]),
    }


def _additions(population: Population, state: State, counts: np.ndarray, start: int, end: int, rng):
    """New (user, show) rows for users who add shows, skipping shows already on their lists."""
    lists, n = state.lists, population.catalogue.n_shows
    adders = np.flatnonzero(counts > 0)
    owner, show = sample_shows(population.items, state.traits, adders, counts[adders], rng, follow_franchise=0.3)
    existing_rows, existing_owner = _rows_of(lists, adders)
    new = ~np.isin(owner * n + show, existing_owner * n + lists.show[existing_rows])
    owner, show = owner[new], show[new]
    times = np.full(len(owner), start + 1, np.int64), np.full(len(owner), end, np.int64)
    episodes = population.catalogue.num_episodes
    columns = draw_entries(population.items, state.traits, episodes, owner, show, *times, rng, fresh=True)
    return owner, columns


def _newcomers(population: Population, state: State, days: float, start: int, end: int, rng):
    """Accounts created in the window, each importing a whole list."""
    living = int((~state.users.deleted).sum())
    count = int(rng.poisson(population.new_user_rate * living * days))
    traits = state.traits.concat(population.new_traits(count, rng, start, end))
    numbers = state.users.n_users + np.arange(count)
    owner, show = sample_shows(population.items, traits, numbers, traits.target_size[numbers], rng)
    times = np.full(len(owner), start + 1, np.int64), np.full(len(owner), end, np.int64)
    columns = draw_entries(population.items, traits, population.catalogue.num_episodes, owner, show, *times, rng)
    names = draw_usernames(count, rng, taken=state.users.index.keys())
    users = state.users.extended(names, rng.random(count) < population.new_private_fraction)
    return traits, users, owner, columns


def evolve(population: Population, state: State, days: float, rng: np.random.Generator) -> tuple[State, dict[str, int]]:
    """The state ``days`` later, and counts {added, changed, deleted, new_users} (``added``
    includes the entries of new accounts)."""
    start, end = state.now, state.now + int(round(days * DAY))
    lists, n_shows = state.lists, population.catalogue.n_shows
    if end <= start:
        return replace(state, now=end), {"added": 0, "changed": 0, "deleted": 0, "new_users": 0}
    sizes = lists.sizes()  # [n_users]
    events = rng.poisson(state.traits.activity * days) * ~state.users.deleted  # [n_users]
    adds = rng.binomial(events, ADD_SHARE)
    touchers = np.repeat(np.arange(lists.n_users), np.where(sizes > 0, events - adds, 0))
    picks = np.floor(rng.random(len(touchers)) * sizes[touchers]).astype(np.int64)
    touched = sorted_unique(lists.offsets[touchers] + picks)  # [n_touched] row numbers
    deleting = rng.random(len(touched)) < DELETE_SHARE
    deleted_rows, edited_rows = touched[deleting], touched[~deleting]

    edits = _edit(population, state, edited_rows, start, end, rng)
    add_owner, added = _additions(population, state, adds, start, end, rng)
    traits, users, new_owner, new_rows = _newcomers(population, state, days, start, end, rng)

    keep = np.ones(lists.n_entries, bool)
    keep[deleted_rows] = False
    moved_to = np.cumsum(keep) - 1  # [n_entries] row number after the deletions
    kept_keys = (lists.owners() * n_shows + lists.show)[keep]
    insert_owner = np.concatenate([add_owner, new_owner])  # sorted by (user, show) already
    insert_at = np.searchsorted(kept_keys, insert_owner * n_shows + np.concatenate([added["show"], new_rows["show"]]))
    columns = {}
    for name in COLUMNS:
        column = getattr(lists, name)[keep]
        if name in edits:
            column[moved_to[edited_rows]] = edits[name]
        inserted = np.concatenate([added[name], new_rows[name]]).astype(DTYPES[name])
        columns[name] = np.insert(column, insert_at, inserted)

    owners_before = np.searchsorted(lists.offsets, deleted_rows, side="right") - 1
    new_sizes = sizes - np.bincount(owners_before, minlength=lists.n_users)
    new_sizes = np.concatenate([new_sizes, np.zeros(users.n_users - lists.n_users, np.int64)])
    new_sizes += np.bincount(insert_owner, minlength=users.n_users)
    offsets = np.concatenate([[0], np.cumsum(new_sizes)]).astype(np.int64)
    new_state = replace(state, lists=Lists(offsets, **columns), users=users, traits=traits, now=end)
    counts = {
        "added": int(len(insert_owner)),
        "changed": int(len(edited_rows)),
        "deleted": int(len(deleted_rows)),
        "new_users": int(users.n_users - lists.n_users),
    }
    return new_state, counts
