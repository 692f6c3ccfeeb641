"""Diffing fetched lists against stored rows, column-wise in Arrow.

DuckDB spends milliseconds planning and scheduling every statement, whatever its size; for the
few thousand rows of a crawl batch an Arrow join is several times cheaper. The store then only
runs the writes the diff calls for.

A full list that would delete most of a long stored list, or every entry of a stored list of any
length, is more likely a broken answer (an empty page, a cut-short list) than a user clearing
their list, so `DeletionGuard` holds such deletions back until a full list fetched later agrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.acero  # noqa: F401  (Table.join loads it lazily: pay that at import, not on a first write)
import pyarrow.compute as pc

KEYS = ["username", "anime_id"]
# Stored fields that a write can change (first_seen_at is kept from the first write).
ENTRY_FIELDS = (
    "status",
    "score",
    "num_episodes_watched",
    "is_rewatching",
    "updated_at",
    "start_date",
    "finish_date",
)
_OLD = "_old"


@dataclass(frozen=True)
class DeletionGuard:
    """When a full list's deletions wait for confirmation: the list would delete every stored row
    (of a list of any length: one empty answer must not clear a list), or the stored list has at
    least ``min_entries`` rows and the list would delete more than ``max_fraction`` of them."""

    min_entries: int = 50
    max_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.min_entries < 1 or not 0 < self.max_fraction <= 1:
            raise ValueError("min_entries must be >= 1 and max_fraction in (0, 1]")

    def holds(self, stored: pa.Array, deleted: pa.Array) -> pa.Array:
        """Per write: whether ``deleted`` of ``stored`` rows is a mass deletion."""
        big = pc.greater_equal(stored, self.min_entries)
        most = pc.greater(pc.cast(deleted, pa.float64()), pc.multiply(pc.cast(stored, pa.float64()), self.max_fraction))
        everything = pc.and_(pc.greater(stored, 0), pc.equal(deleted, stored))
        return pc.or_(pc.and_(big, most), everything)


@dataclass(frozen=True)
class ListDiff:
    added: pa.Table  # incoming rows not stored yet, with first_seen_at
    changed: pa.Table  # incoming rows whose stored fields differ, with first_seen_at
    deleted: pa.Table  # username, anime_id of stored rows that a full list no longer has
    # One row per write, in order: added, changed, deleted, entries, newest, and held (rows a
    # full list would delete but the guard kept; the write then counts as not full).
    per_write: pa.Table


def last_of_repeats(entries: pa.Table) -> pa.Table:
    """``entries`` without its ``position`` column, keeping the last row of a repeated key."""
    user = pc.dictionary_encode(entries["username"].combine_chunks()).indices.to_numpy()  # [n]
    keys = (user.astype(np.int64) << 32) | entries["anime_id"].to_numpy().astype(np.int64)  # [n]
    if pc.count_distinct(pa.array(keys)).as_py() < entries.num_rows:  # rare: a hash count spares the group-by
        keep = entries.group_by(KEYS, use_threads=False).aggregate([("position", "max")])
        entries = entries.filter(pc.is_in(entries["position"], value_set=keep["position_max"]))
    return entries.drop_columns(["position"])


def _distinct(new: pa.ChunkedArray, old: pa.ChunkedArray) -> pa.ChunkedArray:
    """SQL's IS DISTINCT FROM: NULL equals NULL, NULL differs from any value."""
    differs = pc.or_kleene(pc.not_equal(new, old), pc.xor(pc.is_null(new), pc.is_null(old)))
    return pc.fill_null(differs, False)


def diff_lists(
    incoming: pa.Table, stored: pa.Table, writes: pa.Table, guard: DeletionGuard | None = None
) -> ListDiff:
    """Compare ``incoming`` rows (keys + ENTRY_FIELDS, one row per key) with the ``stored`` rows of
    the same users. ``writes`` has username, full and fetched_at, one row per user, in order, and
    with a ``guard`` also ``confirms``: True where an earlier full list held back a mass deletion,
    so that this one, agreeing, deletes."""
    incoming = incoming.append_column("_incoming", pa.repeat(True, incoming.num_rows))
    old = stored.select(KEYS + list(ENTRY_FIELDS))
    old = old.rename_columns(KEYS + [name + _OLD for name in ENTRY_FIELDS])
    old = old.append_column("_stored", pa.repeat(True, old.num_rows))
    joined = incoming.join(old, keys=KEYS, join_type="full outer", use_threads=False)

    is_incoming = pc.is_valid(joined["_incoming"])
    is_stored = pc.is_valid(joined["_stored"])
    write_of_row = pc.index_in(joined["username"], value_set=writes["username"])
    full = pc.fill_null(pc.take(writes["full"], write_of_row), False)
    first, *rest = ENTRY_FIELDS
    differs = _distinct(joined[first], joined[first + _OLD])
    for name in rest:
        differs = pc.or_(differs, _distinct(joined[name], joined[name + _OLD]))
    added = pc.and_not(is_incoming, is_stored)
    changed = pc.and_(pc.and_(is_incoming, is_stored), differs)
    deleted = pc.and_(pc.invert(is_incoming), full)

    rows = joined.select(KEYS + list(ENTRY_FIELDS)).append_column(
        "first_seen_at", pc.take(writes["fetched_at"], write_of_row)
    )
    flags = pa.table(
        {
            "username": joined["username"],
            "added": pc.cast(added, pa.int64()),
            "changed": pc.cast(changed, pa.int64()),
            "deleted": pc.cast(deleted, pa.int64()),
            "entries": pc.cast(pc.invert(deleted), pa.int64()),
            "stored": pc.cast(is_stored, pa.int64()),
            "newest": joined["updated_at"],  # NULL on stored-only rows: the newest *incoming* time
        }
    )
    totals = flags.group_by("username", use_threads=False).aggregate(
        [("added", "sum"), ("changed", "sum"), ("deleted", "sum"), ("entries", "sum"), ("stored", "sum"),
         ("newest", "max")]
    )
    per_write = _in_write_order(writes, totals)
    deleted_rows = rows.filter(deleted).select(KEYS)
    held = pa.repeat(False, writes.num_rows)
    if guard is not None:
        held = pc.and_not(guard.holds(per_write["stored"], per_write["deleted"]), writes["confirms"])
    kept = pc.cast(pc.if_else(held, per_write["deleted"], 0), pa.int64())  # [writes]
    if pc.any(held).as_py():
        held_users = pc.filter(writes["username"], held)
        deleted_rows = deleted_rows.filter(pc.invert(pc.is_in(deleted_rows["username"], value_set=held_users)))
        per_write = _replace(per_write, "entries", pc.add(per_write["entries"], kept))
        per_write = _replace(per_write, "deleted", pc.subtract(per_write["deleted"], kept))
    per_write = per_write.drop_columns(["stored"]).append_column("held", kept)
    return ListDiff(
        added=rows.filter(added),
        changed=rows.filter(changed),
        deleted=deleted_rows,
        per_write=per_write,
    )


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def _in_write_order(writes: pa.Table, totals: pa.Table) -> pa.Table:
    """Per-user totals aligned with ``writes`` (a write with nothing stored nor sent gets zeros)."""
    where = pc.index_in(writes["username"], value_set=totals["username"])
    columns = {}
    for name in ("added", "changed", "deleted", "entries", "stored"):
        columns[name] = pc.fill_null(pc.take(totals[name + "_sum"], where), 0)
    columns["newest"] = pc.take(totals["newest_max"], where)
    return pa.table(columns)
