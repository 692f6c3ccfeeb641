"""The DuckDB store: users, crawl state, list entries, anime metadata and crawl runs.

`Store.open(path)` opens (and migrates) a file; see `sprout.store.schema` for the tables.
"""

from .database import NotADatabase, SchemaError, StoreError, StoreLocked
from .importer import import_anime5k
from .records import ChangeCounts, CrawlRun, DueUser, UserListWrite, UserOutcome
from .schema import LATEST_VERSION
from .store import Store

__all__ = [
    "LATEST_VERSION",
    "ChangeCounts",
    "CrawlRun",
    "DueUser",
    "NotADatabase",
    "SchemaError",
    "Store",
    "StoreError",
    "StoreLocked",
    "UserListWrite",
    "UserOutcome",
    "import_anime5k",
]
