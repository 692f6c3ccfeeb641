"""Where a profile comes from besides a posted list: a MAL username, or MAL's list export file.

Both end as the same `ProfileEntry` list a client could have posted, so the engine applies the
same profile rules to all three.
"""

from .by_username import (
    InvalidUsername,
    ListFetcher,
    ListFetcherThread,
    MalUnavailable,
    NoClientId,
    PrivateProfile,
    ProfileLookupError,
    UnknownUser,
)
from .export import ExportError, parse_list_export

__all__ = [
    "ExportError",
    "InvalidUsername",
    "ListFetcher",
    "ListFetcherThread",
    "MalUnavailable",
    "NoClientId",
    "PrivateProfile",
    "ProfileLookupError",
    "UnknownUser",
    "parse_list_export",
]
