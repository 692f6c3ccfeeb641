"""Users' anime lists as columnar numpy arrays, sorted by user then show, with per-user offsets.

Every array is treated as immutable once built: changes make a new ``Lists`` and swap it in, so a
request that took a reference keeps a consistent view while the population moves on.
Dates that may be partial (``YYYY``, ``YYYY-MM``) are packed as ``YYYYMMDD`` integers with ``00``
for the unknown parts and 0 for no date at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from sprout.mal.models import LIST_STATUSES

STATUS_CODES = {name: code for code, name in enumerate(LIST_STATUSES)}
WATCHING, COMPLETED, ON_HOLD, DROPPED, PLAN_TO_WATCH = (STATUS_CODES[s] for s in LIST_STATUSES)

# Precision of a packed date: how many of year, month, day it carries.
YEAR_ONLY, YEAR_MONTH, FULL_DATE = 1, 2, 3

COLUMNS = ("show", "status", "score", "episodes", "rewatching", "updated_at", "start_date", "finish_date")
DTYPES = {
    "show": np.int32,
    "status": np.int8,
    "score": np.int8,
    "episodes": np.int32,
    "rewatching": np.bool_,
    "updated_at": np.int64,
    "start_date": np.int32,
    "finish_date": np.int32,
}


def civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01 in integer arithmetic (H. Hinnant's
    algorithm), several times faster than going through ``datetime64`` units."""
    z = days + 719468
    era = np.floor_divide(z, 146097)
    day_of_era = z - era * 146097  # [0, 146096]
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153  # March = 0
    day = day_of_year - (153 * shifted_month + 2) // 5 + 1
    month = np.where(shifted_month < 10, shifted_month + 3, shifted_month - 9)
    year = year_of_era + era * 400 + (month <= 2)
    return year, month, day


def pack_dates(epoch_days: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Pack days since 1970 into ``YYYYMMDD`` integers, zeroing what the precision leaves out."""
    precision = np.broadcast_to(precision, np.shape(epoch_days))
    dated = np.flatnonzero(precision > 0)  # only these need the calendar arithmetic
    year, month, day = civil_from_days(np.asarray(epoch_days, dtype=np.int64)[dated])
    month = np.where(precision[dated] >= YEAR_MONTH, month, 0)
    day = np.where(precision[dated] >= FULL_DATE, day, 0)
    packed = np.zeros(len(precision), np.int32)
    packed[dated] = year * 10000 + month * 100 + day
    return packed


def format_packed(value: int) -> str | None:
    """``20190304`` → ``"2019-03-04"``, ``20190300`` → ``"2019-03"``, ``20190000`` → ``"2019"``, 0 → None."""
    if value <= 0:
        return None
    year, month, day = value // 10000, value // 100 % 100, value % 100
    if month == 0:
        return f"{year:04d}"
    if day == 0:
        return f"{year:04d}-{month:02d}"
    return f"{year:04d}-{month:02d}-{day:02d}"


def iso_times(epoch_seconds: np.ndarray) -> list[str]:
    """ISO 8601 UTC strings in MAL's form (``2017-10-03T13:41:24+00:00``)."""
    text = np.datetime_as_string(np.asarray(epoch_seconds, dtype="datetime64[s]"), unit="s")
    return [t + "+00:00" for t in text.tolist()]


def to_datetime(epoch_seconds: int) -> datetime:
    return datetime.fromtimestamp(int(epoch_seconds), tz=timezone.utc)


@dataclass(frozen=True)
class Lists:
    """All list entries; user ``u`` owns rows ``offsets[u]:offsets[u + 1]``, ordered by show index."""

    offsets: np.ndarray  # [n_users + 1] int64
    show: np.ndarray  # [n_entries] int32 index into the catalogue
    status: np.ndarray  # [n_entries] int8 index into LIST_STATUSES
    score: np.ndarray  # [n_entries] int8, 0 = unrated
    episodes: np.ndarray  # [n_entries] int32 episodes watched
    rewatching: np.ndarray  # [n_entries] bool
    updated_at: np.ndarray  # [n_entries] int64 epoch seconds
    start_date: np.ndarray  # [n_entries] int32 packed date
    finish_date: np.ndarray  # [n_entries] int32 packed date

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_entries(self) -> int:
        return len(self.show)

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)  # [n_users]

    def owners(self) -> np.ndarray:
        """The user of every row."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), self.sizes())  # [n_entries]

    def rows(self, user: int) -> slice:
        return slice(int(self.offsets[user]), int(self.offsets[user + 1]))

    def columns(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in COLUMNS}

    @classmethod
    def empty(cls, n_users: int) -> "Lists":
        return cls(np.zeros(n_users + 1, np.int64), **{c: np.zeros(0, DTYPES[c]) for c in COLUMNS})

    @classmethod
    def from_rows(cls, owner: np.ndarray, columns: dict[str, np.ndarray], n_users: int, n_shows: int) -> "Lists":
        """Build from unsorted rows; a (user, show) pair must appear at most once."""
        key = owner.astype(np.int64) * n_shows + columns["show"]  # [n]
        counts = np.bincount(owner, minlength=n_users)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if len(key) < 2 or bool(np.all(key[1:] > key[:-1])):  # already in order: skip the copy
            return cls(offsets, **{c: np.asarray(columns[c], dtype=DTYPES[c]) for c in COLUMNS})
        order = np.argsort(key, kind="stable")
        return cls(offsets, **{c: np.ascontiguousarray(columns[c][order], dtype=DTYPES[c]) for c in COLUMNS})

    def truth_rows(self, user: int, anime_ids: np.ndarray) -> list[dict]:
        """The user's list as plain dicts, ordered by anime id."""
        rows = self.rows(user)
        ids = anime_ids[self.show[rows]]
        order = np.argsort(ids, kind="stable")
        status = self.status[rows][order].tolist()
        score = self.score[rows][order].tolist()
        episodes = self.episodes[rows][order].tolist()
        rewatching = self.rewatching[rows][order].tolist()
        updated = self.updated_at[rows][order].tolist()
        starts = self.start_date[rows][order].tolist()
        finishes = self.finish_date[rows][order].tolist()
        return [
            {
                "anime_id": int(ids[order[i]]),
                "status": LIST_STATUSES[status[i]],
                "score": score[i],
                "num_episodes_watched": episodes[i],
                "is_rewatching": rewatching[i],
                "updated_at": to_datetime(updated[i]),
                "start_date": format_packed(starts[i]),
                "finish_date": format_packed(finishes[i]),
            }
            for i in range(len(order))
        ]
