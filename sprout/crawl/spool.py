"""The spool: where crawl workers on any host publish fetched lists for the store's one writer.

DuckDB lets one process open its file, and file locks over network shares are not to be trusted,
so crawl workers on other hosts never open the store. Each flush of their crawl becomes one
immutable batch file in the spool (``SPROUT_CRAWL_SPOOL``: a folder, local or shared, or any
URL `pyarrow.fs` opens, such as ``s3://bucket/prefix``); `sprout.crawl.ingest` on the store's
host applies the batches in name order, each exactly once.

Layout under the spool's root::

    batches/<name>.parquet                   published batches, applied in name order
    batches/.<name>.<random>.tmp             being written (folders only); never read
    assignments/<name>.parquet               users handed out to crawl workers (`assignments`)
    taken/<name>@<worker>.parquet            assignments a worker has taken

**Publishing is atomic**: on a filesystem a batch is written under a temporary dot-name, synced,
then renamed into place; on an object store one PUT (a completed upload) makes the object
appear whole. Readers list only ``*.parquet`` names without a leading dot, so they never see
a partial batch; temporary files a killed worker left behind are swept after an hour.

**Names sort in publishing order**: ``<UTC time to the microsecond>Z-<worker>``, the time made
strictly increasing within a process. One worker's batches therefore apply in the order it
wrote them; batches of different workers hold different users (see `assignments`), so their
relative order does not matter.

**Batch schema** (one Parquet file, one row per user; ``OUTCOME_STATES`` from
`sprout.store.records`)::

    username      string, not null
    state         string, not null     'ok': a fetched list; else the outcome of a fetch that
                                       brought none: private | not_found | error | pending
    http_status   int32                200 for a list; the answer's status for an outcome
    error         string               what went wrong (outcomes only)
    full          bool                 lists: the entries are the whole list (rows not in it
                                       are deleted); null for outcomes
    fetched_at    timestamp[us, UTC]   when the list was fetched (outcomes: when asked)
    next_due_at   timestamp[us, UTC]   when the user is due again
    entries       list<struct<anime_id int32, status string, score int16,
                  num_episodes_watched int32, is_rewatching bool,
                  updated_at timestamp[us, UTC], start_date string, finish_date string>>
                                       the list's rows in fetch order, as `list_entries`
                                       stores them; null for outcomes

The file's key-value metadata ``sprout.spool`` is a JSON object: ``format`` (1), ``run_id``
(the crawl run), ``assignment`` (the assignment answered, or null) and ``worker``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from sprout.crawl.batch import BatchResult, ListBatch
from sprout.durable_files import fsync_file, fsync_folder
from sprout.store.crawl_state import OUTCOME_SCHEMA
from sprout.store.database import UTC_TIMESTAMP
from sprout.store.entries import ENTRY_SCHEMA, WRITE_SCHEMA
from sprout.store.records import UserListWrite, UserOutcome

if TYPE_CHECKING:
    from sprout.config import Settings

BATCHES = "batches"
ASSIGNMENTS = "assignments"
TAKEN = "taken"
SUFFIX = ".parquet"
TEMPORARY = ".tmp"
FORMAT = 1
METADATA_KEY = b"sprout.spool"
LIST_STATE = "ok"

_ENTRY_FIELDS = list(ENTRY_SCHEMA)[2:]  # without position and username: the row's list says whose
ENTRY_STRUCT = pa.struct(_ENTRY_FIELDS)
BATCH_SCHEMA = pa.schema(
    [
        pa.field("username", pa.string(), nullable=False),
        pa.field("state", pa.string(), nullable=False),
        pa.field("http_status", pa.int32()),
        pa.field("error", pa.string()),
        pa.field("full", pa.bool_()),
        pa.field("fetched_at", UTC_TIMESTAMP, nullable=False),
        pa.field("next_due_at", UTC_TIMESTAMP, nullable=False),
        pa.field("entries", pa.list_(ENTRY_STRUCT)),
    ]
)


class SpoolError(Exception):
    """A spooled file that cannot be read, or a spool location that cannot be used."""


@dataclass(frozen=True)
class SpooledBatch:
    """A batch read back from the spool, with what its metadata says about where it came from."""

    name: str
    batch: ListBatch
    run_id: str | None
    assignment: str | None
    worker: str | None


def default_worker() -> str:
    """This process's worker name: the host and the process id (unique among running workers)."""
    return safe_name(f"{socket.gethostname()}-{os.getpid()}")


def safe_name(text: str) -> str:
    """``text`` reduced to what names in any store accept ('@' separates names in `taken/`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "worker"


class _TimeIds:
    """UTC times to the microsecond as sortable text, strictly increasing within the process."""

    def __init__(self) -> None:
        self._last_us = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            self._last_us = max(time.time_ns() // 1000, self._last_us + 1)
            seconds, micros = divmod(self._last_us, 1_000_000)
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%S") + f"{micros:06d}Z"


_TIME_IDS = _TimeIds()


class Spool:
    """The spool at ``location``: a folder path, or a URL `pyarrow.fs.FileSystem.from_uri` opens.

    ``filesystem`` given, ``location`` is a path inside it (tests pass an in-memory one).
    """

    def __init__(self, location: str | os.PathLike[str], *, filesystem: pafs.FileSystem | None = None) -> None:
        text = os.fspath(location)
        self.location = text
        if filesystem is not None:
            self.filesystem, self.root = filesystem, text.rstrip("/")
        elif "://" in text:
            try:
                self.filesystem, self.root = pafs.FileSystem.from_uri(text)
            except (pa.ArrowInvalid, OSError) as error:
                raise SpoolError(f"cannot open the spool {text!r}: {error}") from error
            self.root = self.root.rstrip("/")
        else:
            self.filesystem, self.root = pafs.LocalFileSystem(), str(Path(text).expanduser().resolve())
        # A folder gets write-then-rename; an object store's objects appear whole by themselves.
        self._local = isinstance(self.filesystem, pafs.LocalFileSystem)

    @classmethod
    def from_settings(cls, settings: Settings) -> Spool:
        if not settings.crawl_spool:
            raise SpoolError("SPROUT_CRAWL_SPOOL is not set: there is no spool")
        return cls(settings.crawl_spool)

    def __repr__(self) -> str:
        return f"Spool({self.location!r})"

    # Batches

    def publish_tables(
        self,
        lists: pa.Table,
        entries: pa.Table,
        outcomes: pa.Table | None = None,
        *,
        run_id: str,
        assignment: str | None = None,
        worker: str | None = None,
    ) -> str:
        """Publish one batch from plain Arrow tables (see `ListBatch.from_tables` for their
        columns); returns its name."""
        return self.publish_batch(
            ListBatch.from_tables(lists, entries, outcomes), run_id=run_id, assignment=assignment, worker=worker
        )

    def publish(
        self,
        writes: list[UserListWrite],
        outcomes: Iterable[UserOutcome] = (),
        *,
        run_id: str,
        assignment: str | None = None,
        worker: str | None = None,
    ) -> str:
        """Publish fetched lists and outcomes as one batch; returns its name."""
        return self.publish_batch(
            ListBatch.from_records(writes, outcomes), run_id=run_id, assignment=assignment, worker=worker
        )

    def publish_batch(
        self, batch: ListBatch, *, run_id: str, assignment: str | None = None, worker: str | None = None
    ) -> str:
        """Publish ``batch``, fetched by crawl run ``run_id`` for ``assignment``; returns its name."""
        worker = safe_name(worker or default_worker())
        name = self.new_name(worker)
        metadata = {"format": FORMAT, "run_id": run_id, "assignment": assignment, "worker": worker}
        table = batch_file_table(batch).replace_schema_metadata({METADATA_KEY: json.dumps(metadata)})
        self.put_table(BATCHES, name, table)
        return name

    def pending(self) -> list[str]:
        """Published batches not yet applied (nor removed), oldest name first."""
        return self.names(BATCHES)

    def read(self, name: str) -> SpooledBatch:
        """The batch ``name``; `SpoolError` when it cannot be read as one."""
        try:
            table = self.get_table(BATCHES, name)
            metadata = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
            if metadata.get("format") != FORMAT:
                raise ValueError(f"format {metadata.get('format')!r}, expected {FORMAT}")
            batch = batch_from_file_table(table)
        except (OSError, ValueError, KeyError, pa.ArrowException) as error:
            raise SpoolError(
                f"spooled batch {name!r} in {self.location} cannot be read ({error}); "
                f"move it out of {BATCHES}/ to let later batches through"
            ) from error
        return SpooledBatch(name, batch, metadata.get("run_id"), metadata.get("assignment"), metadata.get("worker"))

    def remove(self, name: str) -> None:
        """Delete an applied batch (gone already is fine)."""
        self.delete(BATCHES, name)

    def sweep(self, *, older_than: timedelta = timedelta(hours=1), now: datetime | None = None) -> int:
        """Delete temporary files that killed writers left behind; returns how many."""
        cutoff = (now or datetime.now(UTC)) - older_than
        removed = 0
        for folder in (BATCHES, ASSIGNMENTS, TAKEN):
            for info in self._listing(folder):
                if info.base_name.startswith(".") and info.base_name.endswith(TEMPORARY):
                    if info.mtime is not None and info.mtime.replace(tzinfo=info.mtime.tzinfo or UTC) < cutoff:
                        self._delete_path(info.path)
                        removed += 1
        return removed

    # Files (batches and assignments alike)

    def new_name(self, worker: str) -> str:
        """A name that sorts after every name this process made before."""
        return f"{_TIME_IDS.next()}-{safe_name(worker)}"

    def put_table(self, folder: str, name: str, table: pa.Table) -> None:
        """Write ``folder/name.parquet`` so that a reader sees all of it or nothing."""
        directory = f"{self.root}/{folder}"
        target = f"{directory}/{name}{SUFFIX}"
        self.filesystem.create_dir(directory, recursive=True)
        if not self._local:
            pq.write_table(table, target, filesystem=self.filesystem)
            return
        temporary = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}{TEMPORARY}"
        try:
            pq.write_table(table, temporary, filesystem=self.filesystem)
            fsync_file(temporary)
            self.filesystem.move(temporary, target)
        except BaseException:
            self._delete_path(temporary)
            raise
        fsync_folder(directory)

    def names(self, folder: str) -> list[str]:
        """Names of the published files in ``folder``, sorted."""
        return sorted(
            info.base_name[: -len(SUFFIX)]
            for info in self._listing(folder)
            if info.type == pafs.FileType.File and info.base_name.endswith(SUFFIX) and not info.base_name.startswith(".")
        )

    def get_table(self, folder: str, name: str) -> pa.Table:
        return pq.read_table(f"{self.root}/{folder}/{name}{SUFFIX}", filesystem=self.filesystem)

    def move(self, folder: str, name: str, to_folder: str, to_name: str) -> bool:
        """Rename a file; False when it is gone (another worker moved it first). A rename is
        atomic on a filesystem; on an object store it is a copy and a delete, so callers that
        compete for one file hold a lock around it there."""
        directory = f"{self.root}/{to_folder}"
        self.filesystem.create_dir(directory, recursive=True)
        try:
            self.filesystem.move(f"{self.root}/{folder}/{name}{SUFFIX}", f"{directory}/{to_name}{SUFFIX}")
        except FileNotFoundError:
            return False
        if self._local:
            fsync_folder(directory)
        return True

    def delete(self, folder: str, name: str) -> None:
        self._delete_path(f"{self.root}/{folder}/{name}{SUFFIX}")

    def _delete_path(self, path: str) -> None:
        try:
            self.filesystem.delete_file(path)
        except FileNotFoundError:
            pass

    def _listing(self, folder: str) -> list[pafs.FileInfo]:
        try:
            return self.filesystem.get_file_info(pafs.FileSelector(f"{self.root}/{folder}", allow_not_found=True))
        except FileNotFoundError:  # created by another process while being listed
            return []


class SpoolWriter:
    """The crawl's batch writer in spool mode: each flush becomes one published batch."""

    def __init__(self, spool: Spool, run_id: str, *, assignment: str | None = None, worker: str | None = None) -> None:
        self.spool = spool
        self.run_id = run_id
        self.assignment = assignment
        self.worker = worker

    async def write(self, batch: ListBatch) -> BatchResult:
        name = await asyncio.to_thread(
            self.spool.publish_batch, batch, run_id=self.run_id, assignment=self.assignment, worker=self.worker
        )
        return BatchResult(published=name)


def batch_file_table(batch: ListBatch) -> pa.Table:
    """``batch`` as `BATCH_SCHEMA` rows: its lists (entries nested, in fetch order), then its outcomes."""
    writes, entries = batch.writes, batch.entries
    owner = pc.index_in(entries["username"], value_set=writes["username"]).to_numpy(zero_copy_only=False)
    order = np.lexsort((entries["position"].to_numpy(), owner))  # by list, then fetch order
    rows = entries.take(pa.array(order, pa.int64())).combine_chunks()
    offsets = np.zeros(writes.num_rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(owner, minlength=writes.num_rows), out=offsets[1:])
    fields = pa.StructArray.from_arrays([rows[f.name].combine_chunks() for f in _ENTRY_FIELDS], fields=_ENTRY_FIELDS)
    nested = pa.ListArray.from_arrays(pa.array(offsets), fields)
    lists = pa.Table.from_arrays(
        [
            writes["username"], pa.array([LIST_STATE] * writes.num_rows, pa.string()), writes["http_status"],
            pa.nulls(writes.num_rows, pa.string()), writes["full"], writes["fetched_at"], writes["next_due_at"], nested,
        ],
        schema=BATCH_SCHEMA,
    )
    outcomes = batch.outcomes
    others = pa.Table.from_arrays(
        [
            outcomes["username"], outcomes["state"], outcomes["http_status"], outcomes["error"],
            pa.nulls(outcomes.num_rows, pa.bool_()), outcomes["crawled_at"], outcomes["next_due_at"],
            pa.nulls(outcomes.num_rows, pa.list_(ENTRY_STRUCT)),
        ],
        schema=BATCH_SCHEMA,
    )
    return pa.concat_tables([lists, others])


def batch_from_file_table(table: pa.Table) -> ListBatch:
    """The `ListBatch` a `BATCH_SCHEMA` table holds (the inverse of `batch_file_table`)."""
    table = table.select(BATCH_SCHEMA.names).cast(BATCH_SCHEMA).combine_chunks()
    is_list = pc.equal(table["state"], LIST_STATE)
    lists, others = table.filter(is_list), table.filter(pc.invert(is_list))
    nested = lists["entries"].combine_chunks() if lists.num_rows else pa.array([], pa.list_(ENTRY_STRUCT))
    if nested.null_count:
        raise ValueError("a list row without entries (an empty list is [], not null)")
    flat = pc.list_flatten(nested)
    owners = pc.list_parent_indices(nested)
    entries = pa.Table.from_arrays(
        [pa.array(np.arange(len(flat), dtype=np.int32)), lists["username"].take(owners), *flat.flatten()],
        schema=ENTRY_SCHEMA,
    )
    writes = pa.Table.from_arrays(
        [lists["username"], lists["full"], lists["fetched_at"], lists["next_due_at"], lists["http_status"]],
        schema=WRITE_SCHEMA,
    )
    outcomes = pa.Table.from_arrays(
        [others[name] for name in ("username", "state", "http_status", "error", "fetched_at", "next_due_at")],
        schema=OUTCOME_SCHEMA,
    )
    return ListBatch(writes, entries, outcomes)
