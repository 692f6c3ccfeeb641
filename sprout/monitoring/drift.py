"""Do the lists the champion sees now look like the ones it learned from? Pure numpy, plus one
read of the store.

Two distributions are compared with the population stability index,
``PSI = Σ_bins (a − e) · ln(a / e)`` over the binned shares ``e`` (the champion's snapshot) and
``a`` (the lists a snapshot built now would hold, through the champion's corpus and entry
rules), each share floored at 1e-4 so that an empty bin stays finite. The usual reading: below
0.1 stable, 0.1–0.25 a moderate shift, above 0.25 a large one.

- profile sizes: counted entries per user, in powers-of-two bins (1, 2–3, 4–7, …);
- ratings: every entry's hybrid-normalised rating (the model's input), in ten equal bins over
  its range [-2.5, 2.5].

Beside them: the share of entries updated since the snapshot that are on shows outside the
champion's corpus (it can neither read nor recommend them), and the shows most added that way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

import duckdb
import numpy as np

from sprout.dataset.config import DatasetConfig
from sprout.dataset.corpus import Corpus
from sprout.dataset.features import entry_keep_mask, profile_features, status_codes
from sprout.dataset.snapshot import newest_entry_day, snapshot_cutoff
from sprout.dataset.snapshot_format import SplitArrays
from sprout.dataset.user_rows import read_user_rows
from sprout.store.retention import WITHDRAWN_USERS_SQL

SHARE_FLOOR = 1e-4
SIZE_EDGES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, np.inf])  # [13] counted entries
RATING_EDGES = np.linspace(-2.5, 2.5, 11)  # [11] hybrid-normalised rating
CHUNK_ROWS = 2_000_000  # current rows featurised at once

# Entries updated since the cutoff, of users who can still be read, per show, status and whether
# rated: what the entry rules (sprout.dataset.features) need to say which of them count.
_UPDATED_SINCE_BY_SHOW_SQL = f"""
SELECT e.anime_id, any_value(a.title) AS title, e.status, (e.score > 0)::TINYINT AS rated, count(*) AS entries
FROM list_entries e LEFT JOIN anime a USING (anime_id)
WHERE e.updated_at >= $cutoff AND e.username NOT IN ({WITHDRAWN_USERS_SQL})
GROUP BY e.anime_id, e.status, rated
"""


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The share of ``values`` [n] in each bin of ``edges`` [k + 1] (the last bin includes its
    right edge). [k]"""
    counts = np.histogram(np.asarray(values, np.float64), bins=edges)[0].astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def population_stability_index(expected: np.ndarray, actual: np.ndarray, floor: float = SHARE_FLOOR) -> float:
    """PSI of binned shares ``actual`` [k] against ``expected`` [k] (each floored at ``floor``)."""
    e = np.maximum(np.asarray(expected, np.float64), floor)
    a = np.maximum(np.asarray(actual, np.float64), floor)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass
class Histograms:
    """Binned profile sizes and ratings, accumulated a batch of users at a time."""

    sizes: np.ndarray = field(default_factory=lambda: np.zeros(len(SIZE_EDGES) - 1))
    ratings: np.ndarray = field(default_factory=lambda: np.zeros(len(RATING_EDGES) - 1))

    def add(self, indptr: np.ndarray, values: np.ndarray) -> None:
        """One CSR batch: ``indptr`` [U + 1], normalised ``values`` [n]."""
        sizes = np.diff(indptr)
        self.sizes += np.histogram(sizes[sizes > 0], bins=SIZE_EDGES)[0]
        self.ratings += np.histogram(np.asarray(values, np.float64), bins=RATING_EDGES)[0]

    @staticmethod
    def of_splits(splits: Iterable[SplitArrays]) -> Histograms:
        """Every user of every split (a snapshot's lists as of its date)."""
        histograms = Histograms()
        for split in splits:
            histograms.add(split.indptr, split.values)
        return histograms

    def size_shares(self) -> np.ndarray:
        return self.sizes / max(self.sizes.sum(), 1.0)

    def rating_shares(self) -> np.ndarray:
        return self.ratings / max(self.ratings.sum(), 1.0)


def current_histograms(connection: duckdb.DuckDBPyConnection, corpus: Corpus, config: DatasetConfig) -> Histograms:
    """The lists a snapshot built now with ``config`` would hold, read through ``corpus``."""
    rows = read_user_rows(connection, config, snapshot_cutoff(newest_entry_day(connection)))
    histograms = Histograms()
    for start, end in rows.chunks(CHUNK_ROWS):
        batch = profile_features(*rows.chunk(start, end), corpus)
        histograms.add(batch.indptr, batch.values)
    return histograms


def outside_corpus(
    connection: duckdb.DuckDBPyConnection, corpus: Corpus, snapshot_date: date, top: int = 10
) -> dict[str, object]:
    """Entries updated since ``snapshot_date`` that count, how many are on shows outside
    ``corpus``, and the ``top`` such shows by entries."""
    groups = connection.execute(_UPDATED_SINCE_BY_SHOW_SQL, {"cutoff": snapshot_cutoff(snapshot_date)}).fetchall()
    anime_ids = np.array([g[0] for g in groups], np.int64)  # [g]
    entries = np.array([g[4] for g in groups], np.int64)  # [g]
    counted = entry_keep_mask(status_codes([g[2] for g in groups]), np.array([g[3] for g in groups]))  # [g]
    unknown = counted & (corpus.positions(anime_ids) < 0)  # [g]
    titles = {g[0]: g[1] for g in groups}
    by_show: dict[int, int] = {}
    for anime_id, n in zip(anime_ids[unknown].tolist(), entries[unknown].tolist()):
        by_show[anime_id] = by_show.get(anime_id, 0) + n
    outside = sorted(((a, titles[a], n) for a, n in by_show.items()), key=lambda row: (-row[2], row[0]))
    total = int(entries[counted].sum())
    outside_total = int(entries[unknown].sum())
    return {
        "updated_entries": total,
        "outside_corpus_entries": outside_total,
        "outside_corpus_share": outside_total / total if total else 0.0,
        "top_outside_corpus": [{"anime_id": a, "title": t or f"#{a}", "entries": n} for a, t, n in outside[:top]],
    }


def drift_figures(reference: Histograms, current: Histograms) -> dict[str, float]:
    """PSI of profile sizes and ratings, and how many users each side holds."""
    return {
        "profile_size_psi": population_stability_index(reference.size_shares(), current.size_shares()),
        "rating_psi": population_stability_index(reference.rating_shares(), current.rating_shares()),
        "reference_users": float(reference.sizes.sum()),
        "current_users": float(current.sizes.sum()),
    }
