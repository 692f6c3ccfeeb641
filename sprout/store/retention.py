"""Purging the lists of users who took them away.

A user whose list answers private (403) or whose account is gone (404) is left out of new
snapshots at once (see ``withdrawn_at`` in `sprout.store.schema`); their stored entries are kept
for a retention period, in case the verdict was a passing one, then deleted. Their username and
crawl state stay, so the crawler keeps rechecking them; one who comes back is listed in full.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from .database import as_utc, scalar
from .schema import WITHDRAWN_STATES
from .store import Store

# Users whose lists must stay out of new snapshots: marked withdrawn, or (a row written by hand)
# in a withdrawn state without the mark.
WITHDRAWN_USERS_SQL = (
    "SELECT username FROM crawl_state WHERE withdrawn_at IS NOT NULL OR state IN ("
    + ", ".join(f"'{state}'" for state in WITHDRAWN_STATES)
    + ")"
)

_EXPIRED_USERS = """
SELECT username FROM crawl_state
WHERE withdrawn_at IS NOT NULL AND withdrawn_at <= ?
"""


@dataclass(frozen=True)
class PurgeCounts:
    users: int  # withdrawn users whose entries were deleted
    entries: int  # list entries deleted

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def purge_withdrawn_users(store: Store, now: datetime, retention: timedelta) -> PurgeCounts:
    """Delete the list entries of users private or not found since ``now - retention`` or
    earlier, in one transaction, and reset their crawl state so that a return is listed in full."""
    if retention < timedelta(0):
        raise ValueError("retention must be zero or more")
    params = [as_utc(now, "now") - retention]
    with store.transaction() as connection:
        users = scalar(
            connection,
            f"SELECT count(DISTINCT username) FROM list_entries WHERE username IN ({_EXPIRED_USERS})",
            params,
        )
        entries = scalar(connection, f"DELETE FROM list_entries WHERE username IN ({_EXPIRED_USERS})", params)
        connection.execute(
            f"""
            UPDATE crawl_state SET entries = 0, high_water_mark = NULL, last_full_refresh_at = NULL
            WHERE username IN ({_EXPIRED_USERS})
            """,
            params,
        )
    return PurgeCounts(users=users, entries=entries)


def withdrawn_users(store: Store) -> int:
    """Users whose list is private or whose account is gone, purged or not yet."""
    with store.transaction() as connection:
        return scalar(connection, "SELECT count(*) FROM crawl_state WHERE withdrawn_at IS NOT NULL")
