"""Opening a DuckDB file, the store's errors, transactions and bulk-input helpers.

DuckDB lets one process hold a file read-write, and then no other process can open it at all
(not even read-only). Opening therefore turns DuckDB's lock error into a typed `StoreLocked`,
optionally retrying until a deadline, so callers can tell "busy" from "broken".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

T = TypeVar("T")

IN_MEMORY = ":memory:"
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")

_LOCK_MESSAGES = ("Could not set lock", "Conflicting lock")
_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 0.5


class StoreError(Exception):
    """Base of every error the store raises on purpose."""


class StoreLocked(StoreError):
    """Another process holds the database file, so this one cannot open it."""

    def __init__(self, path: Path | str, detail: str = "") -> None:
        self.path = Path(path)
        message = (
            f"{self.path}: another process holds the database (DuckDB allows one process per file "
            "while it is open for writing); close it or wait for it to finish"
        )
        super().__init__(f"{message}. {detail}" if detail else message)


class NotADatabase(StoreError):
    """The path exists but is not a DuckDB database file."""


class SchemaError(StoreError):
    """The file's schema version does not fit this code (newer, or older when read-only)."""


def as_utc(value: datetime, name: str = "datetime") -> datetime:
    """The same instant in UTC; naive datetimes are refused since their zone is a guess."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def connect(path: Path | str, *, read_only: bool = False, wait_s: float = 0.0) -> duckdb.DuckDBPyConnection:
    """A connection to ``path`` in UTC, retrying on DuckDB's lock error for up to ``wait_s`` seconds."""
    in_memory = str(path) == IN_MEMORY
    if not in_memory:
        path = Path(path)
        if read_only and not path.exists():
            raise StoreError(f"{path}: no database there to open read-only")
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(wait_s, 0.0)
    delay = _RETRY_FIRST_S
    while True:
        try:
            connection = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as error:
            text = str(error)
            if "not a valid DuckDB database file" in text:
                raise NotADatabase(f"{path}: not a DuckDB database file") from error
            if not any(marker in text for marker in _LOCK_MESSAGES):
                raise StoreError(f"{path}: cannot open: {text}") from error
            if time.monotonic() + delay > deadline:
                raise StoreLocked(path, text.split(". See also")[0]) from error
        except duckdb.ConnectionException as error:
            # This process already has the file open in the other mode (read-only vs read-write).
            raise StoreError(f"{path}: already open in this process with a different mode: {error}") from error
        time.sleep(delay)
        delay = min(delay * 2, _RETRY_MAX_S)
    connection.execute("SET TimeZone = 'UTC'")  # TIMESTAMPTZ values come back as UTC datetimes
    return connection


def scalar(connection: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """The single value of a query (or of an INSERT/UPDATE/DELETE: its row count)."""
    # fetchall, not fetchone: DuckDB keeps a half-read result open and refuses other work then.
    return connection.execute(sql, params or []).fetchall()[0][0]


@contextmanager
def transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT, rolling back everything on any exception (including a failed COMMIT)."""
    connection.execute("BEGIN TRANSACTION")
    try:
        yield connection
    except BaseException:
        with suppress(duckdb.Error):  # keep the original error if the rollback fails too
            connection.execute("ROLLBACK")
        raise
    try:
        connection.execute("COMMIT")
    except BaseException:
        with suppress(duckdb.Error):  # DuckDB may have ended the failed transaction already
            connection.execute("ROLLBACK")
        raise


@contextmanager
def registered(connection: duckdb.DuckDBPyConnection, **tables: pa.Table) -> Iterator[None]:
    """Arrow tables visible to SQL under the given names for the duration of the block."""
    for name, table in tables.items():
        connection.register(name, table)
    try:
        yield
    except BaseException:
        # The transaction may be aborted, and then DuckDB refuses even to unregister; the
        # names are replaced by the next registration anyway. Keep the original error.
        for name in tables:
            with suppress(duckdb.Error):
                connection.unregister(name)
        raise
    for name in tables:
        connection.unregister(name)


def unique_rounds(items: Sequence[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """Split ``items`` into consecutive rounds in which no key repeats, keeping their order.

    Set-based upserts cannot touch one row twice in a statement; applying the rounds one after
    another gives the same result as applying the items one by one (almost always one round).
    """
    rounds: list[list[T]] = []
    seen: dict[Hashable, int] = {}
    for item in items:
        index = seen.get(key(item), -1) + 1
        seen[key(item)] = index
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(item)
    return rounds
