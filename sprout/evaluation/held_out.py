"""Held-out users of one split, gathered once and shared by every evaluator (docs/design.md §7).

Each validation or test user's profile is cut into fold-in entries (the model's input) and
held-out entries (what it should predict). Dense ``[U, C]`` masks are fine at evaluation sizes
(U ≤ 1000, C ≤ 6000 is 6 MB per mask). Popularity comes from the training split only, so no
evaluated user's entries leak into a baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sprout.dataset.features import owners
from sprout.dataset.snapshot_format import Snapshot, SplitArrays

EVALUATED_SPLITS = ("validation", "test")


@dataclass(frozen=True)
class HeldOutUsers:
    """Everything a ranking or rating evaluator needs about one split's held-out users."""

    split_name: str
    split: SplitArrays  # the split's CSR arrays (fold-in inputs are built from them)
    fold_in: np.ndarray  # [U, C] bool: the profile the model sees; never recommended
    held_out: np.ndarray  # [U, C] bool: relevant items
    rated_users: np.ndarray  # [m] int64 row of each held-out rated entry
    rated_items: np.ndarray  # [m] int32 corpus index
    rated_scores: np.ndarray  # [m] float64 raw score 1..10
    mu: np.ndarray  # [U] float64 the user's fold-in mean (5 when they rated nothing)
    sigma: np.ndarray  # [U] float64
    fold_in_score_sum: np.ndarray  # [U] float64 sum of fold-in raw scores
    fold_in_score_count: np.ndarray  # [U] int64 number of fold-in rated entries
    popularity: np.ndarray  # [C] int64 training users listing each show
    n_train_users: int

    @property
    def n_users(self) -> int:
        return self.fold_in.shape[0]

    @property
    def corpus_size(self) -> int:
        return self.fold_in.shape[1]

    @property
    def held_out_gains(self) -> np.ndarray:
        """Graded relevance [U, C]: held-out score / 10, an unrated held-out show at the user's mean / 10."""
        gains = np.where(self.held_out, self.mu[:, None] / 10.0, 0.0)
        gains[self.rated_users, self.rated_items] = self.rated_scores / 10.0
        return gains

    @property
    def evaluated(self) -> np.ndarray:
        """Users with at least one held-out entry: the only ones metrics are averaged over. [U]"""
        return self.held_out.any(axis=1)


def item_popularity(train: SplitArrays, corpus_size: int) -> np.ndarray:
    """Training users listing each show (a user lists a show at most once). [C] int64"""
    return np.bincount(train.items, minlength=corpus_size).astype(np.int64)


def held_out_users_from_splits(
    split: SplitArrays, train: SplitArrays, corpus_size: int, split_name: str = "test"
) -> HeldOutUsers:
    """Gather held-out users from CSR arrays (the snapshot-free form, handy in tests)."""
    if split.heldout is None:
        raise ValueError(f"split {split_name!r} has no held-out entries; evaluate 'validation' or 'test'")
    n_users = split.n_users
    owner = owners(split.indptr)  # [n]
    heldout = np.asarray(split.heldout, bool)  # [n]
    fold_in = np.zeros((n_users, corpus_size), bool)
    held_out = np.zeros((n_users, corpus_size), bool)
    fold_in[owner[~heldout], split.items[~heldout]] = True
    held_out[owner[heldout], split.items[heldout]] = True

    scores = split.scores.astype(np.float64)  # [n]
    rated_held_out = heldout & (scores > 0)
    rated_fold_in = ~heldout & (scores > 0)
    return HeldOutUsers(
        split_name=split_name,
        split=split,
        fold_in=fold_in,
        held_out=held_out,
        rated_users=owner[rated_held_out],
        rated_items=split.items[rated_held_out],
        rated_scores=scores[rated_held_out],
        mu=np.asarray(split.mu, np.float64),
        sigma=np.asarray(split.sigma, np.float64),
        fold_in_score_sum=np.bincount(owner, weights=np.where(rated_fold_in, scores, 0.0), minlength=n_users),
        fold_in_score_count=np.bincount(owner, weights=rated_fold_in, minlength=n_users).astype(np.int64),
        popularity=item_popularity(train, corpus_size),
        n_train_users=train.n_users,
    )


def held_out_users(snapshot: Snapshot, split: str = "test") -> HeldOutUsers:
    """Held-out users of ``split`` ('validation' or 'test') of a loaded snapshot."""
    if split not in EVALUATED_SPLITS:
        raise ValueError(f"can only evaluate on {EVALUATED_SPLITS}, not {split!r}")
    return held_out_users_from_splits(
        snapshot.split(split), snapshot.split("train"), snapshot.manifest.corpus_size, split_name=split
    )
