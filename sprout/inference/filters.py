"""Which corpus shows a request may get back: the user's own shows, exclusions and filters.

`CatalogueIndex` is built once per corpus (media types, genre membership, sequel ancestry,
popularity); `allowed_shows` turns one request's options into a mask over the corpus.
Media types and genres match case-insensitively; a show without a known media type is dropped
whenever a media-type filter is given.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from sprout.dataset.corpus import Corpus

from .ranking import popularity_shares
from .sequels import AncestorTable, ancestor_table, direct_predecessors, hidden_sequels


@dataclass(frozen=True)
class CatalogueIndex:
    """Per-corpus lookups the filters need."""

    media_types: np.ndarray  # [C] object: casefolded media type, "" when unknown
    genre_members: dict[str, np.ndarray]  # casefolded genre -> corpus indices [n] int64
    ancestors: AncestorTable
    popularity: np.ndarray  # [C] float64 share of all list rows

    @property
    def corpus_size(self) -> int:
        return len(self.media_types)

    @classmethod
    def from_corpus(cls, corpus: Corpus) -> CatalogueIndex:
        members: dict[str, list[int]] = defaultdict(list)
        for position, genres in enumerate(corpus.genres):
            for genre in {g.casefold() for g in genres}:
                members[genre].append(position)
        predecessors = corpus.predecessors or ((),) * len(corpus)
        return cls(
            media_types=np.array([(m or "").casefold() for m in corpus.media_types], dtype=object),
            genre_members={genre: np.array(p, np.int64) for genre, p in members.items()},
            ancestors=ancestor_table(direct_predecessors(predecessors, corpus.positions)),
            popularity=popularity_shares(corpus.counts),
        )


def allowed_shows(
    index: CatalogueIndex,
    *,
    listed: np.ndarray,
    excluded: np.ndarray,
    media_types: list[str] | None,
    genres_excluded: list[str],
    watched: np.ndarray | None,
) -> np.ndarray:
    """Mask [C] bool of shows that may be recommended.

    listed / excluded: corpus indices [n] (the profile's shows, the request's exclusions);
    watched: [C] bool for the unwatched-sequel rule, or None to keep sequels.
    """
    allowed = np.ones(index.corpus_size, bool)
    allowed[listed] = False
    allowed[excluded] = False
    if media_types is not None:
        allowed &= np.isin(index.media_types, [m.casefold() for m in media_types])
    for genre in genres_excluded:
        allowed[index.genre_members.get(genre.casefold(), np.zeros(0, np.int64))] = False
    if watched is not None:
        allowed &= ~hidden_sequels(index.ancestors, watched)
    return allowed
