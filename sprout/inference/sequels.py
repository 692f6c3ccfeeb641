"""Hiding sequels of shows the user has not watched.

Rule: a show is hidden when any of its predecessors — direct or transitive, following prequel and
parent-story links — is a corpus show that the user has not watched. Watched means listed with
status watching, completed or on hold; dropped and plan-to-watch do not count. Predecessors
outside the corpus are ignored: they are rare specials or excluded shows, and a user could hardly
be expected to have seen them before a popular sequel. The walk is cycle-safe (MAL relations do
have cycles) and a show is never its own predecessor.

The transitive closure is computed once per corpus (`ancestor_table`); per request the rule is a
gather and a count over that table (`hidden_sequels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WATCHED_STATUSES = frozenset({"watching", "completed", "on_hold"})


@dataclass(frozen=True)
class AncestorTable:
    """Every corpus show's transitive in-corpus predecessors, in CSR form."""

    indptr: np.ndarray  # [C + 1] int64
    ancestors: np.ndarray  # [m] int32 corpus index
    owner: np.ndarray  # [m] int32 the show each ancestor belongs to

    @property
    def corpus_size(self) -> int:
        return len(self.indptr) - 1


def ancestor_table(direct: Sequence[Sequence[int]]) -> AncestorTable:
    """Transitive closure of ``direct`` (per corpus show, the corpus indices it directly follows).

    Ancestors of each show are listed in ascending order, without the show itself.
    """
    corpus_size = len(direct)
    closures: list[list[int]] = []
    for show in range(corpus_size):
        seen = {show}
        stack = list(direct[show])
        while stack:
            previous = stack.pop()
            if previous in seen:
                continue
            seen.add(previous)
            stack.extend(direct[previous])
        seen.discard(show)
        closures.append(sorted(seen))
    lengths = np.array([len(c) for c in closures], np.int64)  # [C]
    indptr = np.zeros(corpus_size + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    ancestors = np.array([a for c in closures for a in c], np.int32)  # [m]
    owner = np.repeat(np.arange(corpus_size, dtype=np.int32), lengths)  # [m]
    return AncestorTable(indptr=indptr, ancestors=ancestors, owner=owner)


def direct_predecessors(predecessor_ids: Sequence[Sequence[int]], positions_of) -> list[np.ndarray]:
    """Map each show's predecessor anime ids to corpus indices, dropping those outside the corpus.

    ``positions_of`` maps an id array to corpus indices (-1 outside), like `Corpus.positions`.
    """
    mapped = []
    for ids in predecessor_ids:
        positions = positions_of(np.asarray(ids, np.int64)) if len(ids) else np.zeros(0, np.int32)
        mapped.append(positions[positions >= 0])
    return mapped


def hidden_sequels(table: AncestorTable, watched: np.ndarray) -> np.ndarray:
    """Shows with at least one unwatched ancestor: watched [C] bool -> hidden [C] bool."""
    unwatched = ~watched[table.ancestors]  # [m]
    return np.bincount(table.owner, weights=unwatched, minlength=table.corpus_size) > 0  # [C]
