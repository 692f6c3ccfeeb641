"""The champion's users as of its snapshot date, and what they added since: the closest offline
figure to "does it predict what people watch next".

The store keeps each entry's current state only, so "the list as of the snapshot date" is read
from the champion's own snapshot, which holds exactly what the model learned from. For each of
the snapshot's users (any split) who can still be read:

- fold-in: their entries in the snapshot (entry rules and corpus already applied);
- targets: entries of their stored list now that count (the same entry rules), are shows of the
  champion's corpus, were updated after the snapshot date, and are not in their snapshot row. An
  entry edited since (a new score, planned → watching) was in the snapshot and stays fold-in; a
  planned show now being watched was not (plan-to-watch never counts) and is a target.

Users with at least one target are evaluated; the rest are counted. Held-out arrays use the
snapshot's own normalised values, so the model sees each profile exactly as it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sprout.dataset.features import entry_keep_mask, owners, status_codes
from sprout.dataset.snapshot import snapshot_cutoff
from sprout.dataset.snapshot_format import Snapshot, SplitArrays
from sprout.dataset.splits import SPLIT_NAMES
from sprout.evaluation.held_out import HeldOutUsers, held_out_users_from_splits
from sprout.store.database import registered, scalar
from sprout.store.retention import WITHDRAWN_USERS_SQL


# Entries of the snapshot's users updated after the snapshot day, and who of them is gone now.
_UPDATED_SINCE_SQL = f"""
SELECT e.username, e.anime_id, e.status, e.score
FROM list_entries e JOIN snapshot_users s USING (username)
WHERE e.updated_at >= $cutoff AND e.username NOT IN ({WITHDRAWN_USERS_SQL})
"""
_WITHDRAWN_SQL = f"SELECT count(*) FROM snapshot_users WHERE username IN ({WITHDRAWN_USERS_SQL})"


@dataclass(frozen=True)
class FreshUsers:
    """The evaluated users (fold-in = snapshot row, held out = added since) and the counts."""

    users: HeldOutUsers | None  # None when nobody added a show of the corpus since
    snapshot_users: int  # users in the champion's snapshot
    withdrawn_users: int  # of those, now private or deleted
    targets: int  # held-out entries over all evaluated users
    sampled_from: int  # users with at least one target before the ``max_users`` cap

    def figures(self) -> dict[str, float]:
        evaluated = 0 if self.users is None else self.users.n_users
        return {
            "fresh_users": float(evaluated),
            "fresh_users_with_additions": float(self.sampled_from),
            "fresh_targets": float(self.targets),
            "snapshot_users": float(self.snapshot_users),
            "withdrawn_users": float(self.withdrawn_users),
            "withdrawn_share": self.withdrawn_users / max(self.snapshot_users, 1),
        }


def snapshot_users(snapshot: Snapshot) -> SplitArrays:
    """Every user of the snapshot, train then validation then test, with every entry (held-out
    ones included) as one split without a held-out mask: the lists as of the snapshot date."""
    joined = snapshot.split(SPLIT_NAMES[0])
    for name in SPLIT_NAMES[1:]:
        joined = joined.joined(snapshot.split(name))
    return joined


def fresh_users(
    connection: duckdb.DuckDBPyConnection, snapshot: Snapshot, fit_on: SplitArrays, *,
    max_users: int = 2000, seed: int = 0,
) -> FreshUsers:
    """Gather the fresh-data users of ``snapshot`` from the store read through ``connection``.

    ``fit_on`` is the users the champion was fitted on: popularity counts come from them, as for
    the gate. At most ``max_users`` users are kept (a seeded sample), bounding the dense masks.
    """
    everyone = snapshot_users(snapshot)
    names = pa.table({"username": pa.array(everyone.usernames, pa.string())})
    cutoff = snapshot_cutoff(date.fromisoformat(snapshot.manifest.snapshot_date))
    with registered(connection, snapshot_users=names):
        updated = connection.sql(_UPDATED_SINCE_SQL, params={"cutoff": cutoff}).to_arrow_table()
        withdrawn = int(scalar(connection, _WITHDRAWN_SQL))

    user = pc.index_in(updated["username"], value_set=names["username"]).to_numpy().astype(np.int64)  # [m]
    item = snapshot.corpus.positions(updated["anime_id"].to_numpy()).astype(np.int64)  # [m] -1: not in corpus
    status = status_codes(updated["status"].to_numpy(zero_copy_only=False))
    score = updated["score"].to_numpy().astype(np.int8)
    counted = entry_keep_mask(status, score) & (item >= 0)
    corpus_size = len(snapshot.corpus)
    known = owners(everyone.indptr) * corpus_size + everyone.items  # [n] keys of the snapshot rows
    new = counted & ~np.isin(user * corpus_size + item, known)
    user, item, score = user[new], item[new], score[new]

    with_targets = np.unique(user)  # [U'] sorted: users with something added since
    sampled_from = len(with_targets)
    if sampled_from > max_users:
        with_targets = np.sort(np.random.default_rng(seed).choice(with_targets, max_users, replace=False))
    keep = np.isin(user, with_targets)
    user, item, score = user[keep], item[keep], score[keep]
    users = None
    if len(with_targets):
        split = _with_targets(everyone, with_targets, user, item, score)
        users = held_out_users_from_splits(split, fit_on, corpus_size, split_name="fresh")
    return FreshUsers(users, everyone.n_users, withdrawn, int(len(user)), sampled_from)


def _with_targets(
    everyone: SplitArrays, rows: np.ndarray, user: np.ndarray, item: np.ndarray, score: np.ndarray
) -> SplitArrays:
    """The users ``rows`` [U'] (sorted) of ``everyone``: each one's snapshot entries, then their
    targets (``user``, ``item``, ``score`` [t]) marked held out."""
    selected = np.zeros(everyone.n_users, bool)
    selected[rows] = True
    then = everyone.subset(selected)  # snapshot rows of the selected users, in order
    target_owner = np.searchsorted(rows, user)  # [t] row in ``then``
    owner = np.concatenate([owners(then.indptr), target_owner])  # [n + t]
    order = np.argsort(owner, kind="stable")  # each user's snapshot entries first, then targets
    sizes = np.bincount(owner, minlength=len(rows))
    n_targets = len(user)

    def merged(snapshot_part: np.ndarray, target_part: np.ndarray) -> np.ndarray:
        return np.concatenate([snapshot_part, target_part.astype(snapshot_part.dtype)])[order]

    return SplitArrays(
        usernames=then.usernames,
        indptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        items=merged(then.items, item),
        values=merged(then.values, np.zeros(n_targets)),  # held-out values never reach the model
        rated=merged(then.rated, score > 0),
        scores=merged(then.scores, score),
        mu=then.mu,
        sigma=then.sigma,
        heldout=merged(np.zeros(then.n_entries, bool), np.ones(n_targets, bool)),
    )
