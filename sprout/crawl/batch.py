"""One flush of a crawl: the lists fetched and the fetches that brought none, as Arrow tables.

The crawl hands each flush to its writer as a `ListBatch`: straight into the store
(`ingest.StoreWriter`), or into the spool for the store's host to apply later (`spool.Spool`).
Either way the same function writes it (`ingest.apply_batch`), so both paths store the same rows.

A user appears at most once in a batch (a crawl fetches each user once); lists are applied
before outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sprout.store.crawl_state import OUTCOME_SCHEMA, outcomes_table
from sprout.store.entries import ENTRY_SCHEMA, WRITE_SCHEMA, GuardedChange, entries_table, writes_table
from sprout.store.records import OUTCOME_STATES, UserListWrite, UserOutcome

LIST_HTTP_STATUS = 200


@dataclass(frozen=True)
class ListBatch:
    """``writes`` (`WRITE_SCHEMA`, one row per list), ``entries`` (`ENTRY_SCHEMA`, the lists' rows
    in fetch order) and ``outcomes`` (`OUTCOME_SCHEMA`, private / not_found / error / pending)."""

    writes: pa.Table
    entries: pa.Table
    outcomes: pa.Table

    def __post_init__(self) -> None:
        for table, schema in ((self.writes, WRITE_SCHEMA), (self.entries, ENTRY_SCHEMA), (self.outcomes, OUTCOME_SCHEMA)):
            if not table.schema.equals(schema):
                raise ValueError(f"expected columns {schema.names} typed as the store's, got {table.schema}")
        users = pa.chunked_array([*self.writes["username"].chunks, *self.outcomes["username"].chunks], pa.string())
        if users.null_count or pc.count_distinct(users).as_py() != len(users):
            raise ValueError("each user must appear once in a batch, with a list or an outcome")
        listed = pc.is_in(self.entries["username"], value_set=self.writes["username"])
        if self.entries.num_rows and not pc.all(listed).as_py():
            raise ValueError("every entry must belong to a list of the batch")
        states = pc.unique(self.outcomes["state"]).to_pylist()
        if any(state not in OUTCOME_STATES for state in states):
            raise ValueError(f"outcome states must be among {OUTCOME_STATES}, got {states}")

    @classmethod
    def from_records(cls, writes: list[UserListWrite], outcomes: Iterable[UserOutcome] = ()) -> ListBatch:
        return cls(writes_table(writes, LIST_HTTP_STATUS), entries_table(writes), outcomes_table(list(outcomes)))

    @classmethod
    def from_tables(cls, lists: pa.Table, entries: pa.Table, outcomes: pa.Table | None = None) -> ListBatch:
        """A batch from plain tables, cast to the store's types.

        ``lists``: username, full, fetched_at, next_due_at. ``entries``: username, anime_id,
        status, score, num_episodes_watched, is_rewatching, updated_at, start_date, finish_date,
        in fetch order (a repeated anime id keeps its last row). ``outcomes``: username, state,
        http_status, error, at (or crawled_at), next_due_at. start_date, finish_date, http_status
        and error may be left out (all null). Times without a time zone are read as UTC.
        """
        lists = _conform(lists, WRITE_SCHEMA, {"http_status": pa.array([LIST_HTTP_STATUS] * lists.num_rows, pa.int32())})
        entries = _conform(
            entries, ENTRY_SCHEMA, {"position": pa.array(np.arange(entries.num_rows, dtype=np.int32))},
            optional=("start_date", "finish_date"),
        )
        if outcomes is None:
            outcomes = OUTCOME_SCHEMA.empty_table()
        elif "at" in outcomes.column_names and "crawled_at" not in outcomes.column_names:
            outcomes = outcomes.rename_columns(["crawled_at" if name == "at" else name for name in outcomes.column_names])
        return cls(lists, entries, _conform(outcomes, OUTCOME_SCHEMA, {}, optional=("http_status", "error")))

    @classmethod
    def concat(cls, batches: Sequence[ListBatch]) -> ListBatch:
        """One batch holding ``batches`` (whose users must be distinct), in order; each batch's
        entry positions are shifted past the previous ones', so fetch order survives."""
        if not batches:
            raise ValueError("nothing to concatenate")
        entries, offset = [], 0
        for batch in batches:
            positions = batch.entries["position"]
            shifted = pc.add(positions, pa.scalar(offset, pa.int32()))
            entries.append(batch.entries.set_column(0, "position", shifted))
            if batch.entries.num_rows:
                offset += pc.max(positions).as_py() + 1
        return cls(
            pa.concat_tables([batch.writes for batch in batches]),
            pa.concat_tables(entries),
            pa.concat_tables([batch.outcomes for batch in batches]),
        )

    @property
    def users(self) -> int:
        return self.writes.num_rows + self.outcomes.num_rows

    def usernames(self) -> list[str]:
        """Every user of the batch: those with a list first, then those with an outcome."""
        return self.writes["username"].to_pylist() + self.outcomes["username"].to_pylist()

    def lists_only(self, usernames: Iterable[str]) -> ListBatch:
        """The lists of ``usernames`` alone (no outcomes)."""
        names = pa.array(list(usernames), pa.string())
        return ListBatch(_rows_of(self.writes, names), _rows_of(self.entries, names), OUTCOME_SCHEMA.empty_table())

    def without(self, usernames: Iterable[str]) -> ListBatch:
        """The batch less everything about ``usernames``."""
        names = pa.array(list(usernames), pa.string())
        return ListBatch(*(_rows_of(table, names, keep=False) for table in (self.writes, self.entries, self.outcomes)))

    def with_outcomes(self, outcomes: pa.Table) -> ListBatch:
        return ListBatch(self.writes, self.entries, pa.concat_tables([self.outcomes, outcomes.cast(OUTCOME_SCHEMA)]))


def _rows_of(table: pa.Table, names: pa.Array, *, keep: bool = True) -> pa.Table:
    member = pc.is_in(table["username"], value_set=names)
    return table.filter(member if keep else pc.invert(member))


@dataclass(frozen=True)
class BatchResult:
    """What a writer did with a batch: the changes to stored lists, one per list written, and the
    users whose lists the store refused (recorded as errors) - or, for the spool, the name the
    batch was published under (changes are only known when it is applied)."""

    changes: Sequence[GuardedChange] = ()
    refused: Sequence[str] = ()
    published: str | None = None
    stale: Sequence[str] = ()  # users left out: the store already holds a newer crawl of them


def _conform(
    table: pa.Table, schema: pa.Schema, defaults: dict[str, pa.Array], optional: tuple[str, ...] = ()
) -> pa.Table:
    """``table``'s columns in ``schema``'s order and types; ``defaults`` and all-null ``optional``
    columns fill in for missing ones."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        elif field.name in defaults:
            columns.append(defaults[field.name])
        elif field.name in optional:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValueError(f"missing column {field.name!r} (needs {schema.names})")
    return pa.Table.from_arrays(columns, schema=schema)
