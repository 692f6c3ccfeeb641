"""The simulated world: a show catalogue, users' lists and a clock, behind one lock.

Readers (the HTTP server) take ``population.state`` once per request and use that immutable snapshot;
every change builds a new snapshot and swaps it in under the lock, so requests never see a
half-applied change and never wait for one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import numpy as np

from sprout.malsim.accounts import Users
from sprout.malsim.catalogue import Catalogue, ShowStats
from sprout.malsim.lists import Lists
from sprout.malsim.taste import ItemModel, UserTraits

# Simulated "now" unless a constructor is told otherwise: fixed so that populations are reproducible.
DEFAULT_NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)

# (n_users, rng, window start, window end) -> traits of brand-new users active in that window.
TraitFactory = Callable[[int, np.random.Generator, int, int], UserTraits]


@dataclass(frozen=True)
class State:
    """One consistent snapshot of everything that changes."""

    lists: Lists
    users: Users
    traits: UserTraits
    stats: ShowStats
    now: int  # epoch seconds


class Population:
    """Users' lists over a show catalogue, with a simulated clock.

    Build one with `sprout.malsim.synthetic_population.synthetic_population` or
    `sprout.malsim.realdata.from_anime5k`.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        items: ItemModel,
        state: State,
        *,
        seed: int,
        new_traits: TraitFactory,
        stats_follow_lists: bool = True,
        new_user_rate: float = 2e-4,
        private_fraction: float = 0.0,
    ) -> None:
        self.catalogue = catalogue
        self.items = items
        self.seed = seed
        self.new_traits = new_traits
        # Synthetic shows' counts and means follow the lists; real data keeps its published figures.
        self.stats_follow_lists = stats_follow_lists
        self.new_user_rate = new_user_rate  # new accounts per existing account per day
        self.new_private_fraction = private_fraction  # of accounts that appear later
        self._state = state
        self._lock = threading.Lock()
        self._advances = 0

    # ---- reading -------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self._state.now, tz=timezone.utc)

    @property
    def n_users(self) -> int:
        """Living accounts (private ones included)."""
        return int((~self._state.users.deleted).sum())

    @property
    def n_entries(self) -> int:
        return self._state.lists.n_entries

    def usernames(self, include_deleted: bool = False) -> list[str]:
        users = self._state.users
        if include_deleted:
            return list(users.names)
        return [users.names[u] for u in np.flatnonzero(~users.deleted).tolist()]

    def is_private(self, username: str) -> bool:
        users = self._state.users
        user = users.existing(username)
        if user is None:
            raise KeyError(username)
        return bool(users.private[user])

    def truth(self, username: str) -> list[dict]:
        """The user's whole list (private lists too), ordered by anime id; KeyError when the
        account does not exist or was deleted."""
        state = self._state
        user = state.users.existing(username)
        if user is None:
            raise KeyError(username)
        return state.lists.truth_rows(user, self.catalogue.ids)

    def profile_sizes(self) -> np.ndarray:
        state = self._state
        return state.lists.sizes()[~state.users.deleted]  # [n_living_users]

    # ---- changing ------------------------------------------------------------------------------

    def set_private(self, names: Iterable[str], private: bool = True) -> None:
        with self._lock:
            state = self._state
            self._state = replace(state, users=state.users.with_private(state.users.numbers(names), private))

    def delete_user(self, names: Iterable[str] | str) -> None:
        """Delete accounts: their lists answer 404 and leave the shows' counts."""
        names = [names] if isinstance(names, str) else names
        with self._lock:
            state = self._state
            users = state.users.with_deleted(state.users.numbers(names))
            self._state = self._with_stats(replace(state, users=users))

    def advance(self, days: float, seed: int | None = None) -> dict[str, int]:
        """Move the clock ``days`` forward while users add, edit and delete entries and a few
        accounts appear. Deterministic given the seed (by default, the population's seed and the
        number of earlier advances). Returns counts {added, changed, deleted, new_users}."""
        from sprout.malsim.evolution import evolve

        if days < 0:
            raise ValueError("days must be >= 0")
        with self._lock:
            self._advances += 1
            rng = np.random.default_rng([self.seed, 0x5EED, self._advances] if seed is None else [seed, 0xADD])
            state, counts = evolve(self, self._state, days, rng)
            self._state = self._with_stats(state)
        return counts

    def _with_stats(self, state: State) -> State:
        if not self.stats_follow_lists:
            return state
        alive = ~state.users.deleted[state.lists.owners()]  # [n_entries]
        stats = ShowStats.from_lists(self.catalogue.ids, state.lists.show, state.lists.score, alive)
        return replace(state, stats=stats)
