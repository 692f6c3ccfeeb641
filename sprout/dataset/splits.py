"""Strong-generalisation splits (docs/design.md §4): disjoint validation and test users, the rest train,
and for each held-out user a seeded fold-in / held-out split of their entries.

Deterministic given the seed and the set of users: callers pass users sorted by name, so the
order rows came out of the database never matters. Each decision draws from its own seeded
stream, so changing the entry split never moves users between splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import owners

TRAIN, VALIDATION, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "test")
_USER_STREAM, _ENTRY_STREAM = 0, 1


@dataclass(frozen=True)
class UserSplit:
    """Which split every user falls in, by position in the (name-sorted) user list."""

    assignment: np.ndarray  # [U] int8: TRAIN, VALIDATION or TEST

    def users(self, split: int) -> np.ndarray:
        return np.flatnonzero(self.assignment == split)  # [U_split] ascending


def split_users(
    n_users: int, n_validation: int, n_test: int, seed: int, eligible: np.ndarray | None = None
) -> UserSplit:
    """Pick validation and test users at random (seeded) among the ``eligible`` ones [U] bool
    (default: all); neither split may exceed a third of the eligible users. With every user
    eligible the draw is the same as without the mask."""
    eligible = np.ones(n_users, bool) if eligible is None else np.asarray(eligible, bool)
    most = int(eligible.sum()) // 3
    if n_validation > most or n_test > most:
        raise ValueError(
            f"{int(eligible.sum())} users can be held out, which cannot give {n_validation} validation and "
            f"{n_test} test users: each held-out split may hold at most a third of them ({most}); lower "
            "n_validation_users / n_test_users / min_evaluation_entries or gather more users"
        )
    shuffled = np.random.default_rng([seed, _USER_STREAM]).permutation(n_users)  # [U]
    shuffled = shuffled[eligible[shuffled]]  # the eligible users, in the same random order
    assignment = np.full(n_users, TRAIN, np.int8)
    assignment[shuffled[:n_validation]] = VALIDATION
    assignment[shuffled[n_validation : n_validation + n_test]] = TEST
    return UserSplit(assignment)


def holdout_mask(indptr: np.ndarray, fraction: float, seed: int, split: int = VALIDATION) -> np.ndarray:
    """Entries held out from each user's fold-in profile: round(fraction * n) of a user's n
    entries, at least one when n >= 2 and never all of them. ``split`` picks the random stream,
    so validation and test users draw independently.  # [n] bool"""
    sizes = np.diff(indptr)  # [U]
    n_heldout = np.where(sizes >= 2, np.clip(np.rint(fraction * sizes), 1, sizes - 1), 0)  # [U]
    owner = owners(indptr)  # [n]
    draw = np.random.default_rng([seed, _ENTRY_STREAM, split]).random(len(owner))  # [n]
    order = np.lexsort((draw, owner))  # users stay contiguous, entries shuffled within each
    rank = np.empty(len(owner), np.int64)
    rank[order] = np.arange(len(owner)) - np.asarray(indptr[:-1])[owner[order]]  # [n] rank in user
    return rank < n_heldout[owner]
