"""An incoming profile made model-ready with exactly the training rules (docs/design.md §4).

`sprout.dataset.features.profile_features` — the function that built the training snapshot —
applies the entry rules, maps shows into the corpus, keeps the last listing of a duplicated show
and normalises the scores. This module adds what serving needs around it: the size limit, the
list of ignored entries with reasons, the shows never to recommend back, and which shows count
as watched for the sequel rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np

from sprout.dataset.corpus import Corpus
from sprout.dataset.features import IGNORED_REASONS, LIST_STATUSES, profile_features

from .errors import InvalidProfile, ProfileTooLarge
from .requests import MAX_PROFILE_ENTRIES, Ignored, ProfileEntry
from .sequels import WATCHED_STATUSES

STATUS_CODES = {name: code for code, name in enumerate(LIST_STATUSES)}  # the codes `profile_features` reads
WATCHED_CODES = np.array([name in WATCHED_STATUSES for name in LIST_STATUSES])  # [statuses] bool


@dataclass(frozen=True)
class PreparedProfile:
    """One user's kept entries (input order) and what the ranking needs to know about the rest."""

    items: np.ndarray  # [n] int32 corpus index
    values: np.ndarray  # [n] float32 normalised rating (fills for unrated entries)
    scores: np.ndarray  # [n] int8 raw score, 0 = unrated
    mu: float
    sigma: float
    listed: np.ndarray  # [m] int32 corpus index of every listed show, kept or not: never recommended
    watched: np.ndarray  # [C] bool: last listing is watching, completed or on hold
    ignored: list[Ignored]

    @property
    def length(self) -> int:
        return len(self.items)


def prepare_profile(entries: list[ProfileEntry], corpus: Corpus) -> PreparedProfile:
    """Apply the training entry rules to a request's profile; raise for an unusable one."""
    if len(entries) > MAX_PROFILE_ENTRIES:
        raise ProfileTooLarge(f"the profile has {len(entries)} entries; at most {MAX_PROFILE_ENTRIES} are accepted")
    if not entries:
        raise InvalidProfile("the profile is empty: send at least one list entry")
    n = len(entries)
    anime_ids = np.fromiter(map(attrgetter("anime_id"), entries), np.int64, n)  # [n]
    statuses = np.fromiter(map(STATUS_CODES.__getitem__, map(attrgetter("status"), entries)), np.int8, n)  # [n]
    scores = np.fromiter(map(attrgetter("score"), entries), np.int8, n)  # [n]
    batch = profile_features(np.array([0, n]), anime_ids, statuses, scores, corpus)
    ignored = [
        Ignored(anime_id=int(anime_ids[position]), reason=IGNORED_REASONS[int(code)])
        for position, code in zip(batch.ignored_positions, batch.ignored_reasons, strict=True)
    ]
    if len(batch.items) == 0:
        counts = ", ".join(f"{n} {reason}" for reason, n in batch.ignored_counts().items() if n)
        raise InvalidProfile(f"the profile has no usable entries ({counts}): none is a rated or watched corpus show")
    positions = corpus.positions(anime_ids)  # [n] int32, -1 outside the corpus
    in_corpus = np.flatnonzero(positions >= 0)
    shows, last = np.unique(positions[in_corpus][::-1], return_index=True)  # each show's last listing wins
    watched = np.zeros(len(corpus), bool)
    watched[shows] = WATCHED_CODES[statuses[in_corpus][::-1][last]]
    return PreparedProfile(
        items=batch.items,
        values=batch.values,
        scores=batch.scores,
        mu=float(batch.mu[0]),
        sigma=float(batch.sigma[0]),
        listed=shows.astype(np.int32),
        watched=watched,
        ignored=ignored,
    )
