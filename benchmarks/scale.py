"""Scale benchmark: the data path at the original system's size (1.5M crawled profiles), stage by stage.

A synthetic population (the simulator's generator, `synthetic_population_blocks`, a block of users
at a time) is published straight to a spool folder as crawl batches, without HTTP: public lists
as lists, private accounts as 'private' outcomes → the store's writer ingests the spool into a
DuckDB store (`ingest_spool`, as after a spooled crawl: consecutive batches grouped into one
transaction up to ``--group-entries`` list rows) →
`build_snapshot` cuts the training snapshot → one training epoch's batches are built from its
training users (`batch_rows` and `make_batch`, as the training loop calls them; no model step).

Each stage runs in a child process of its own and reports its wall time and its peak resident
memory: the child's VmHWM, the high-water mark of its own address space since it started
(``ru_maxrss`` of a child also counts the parent's size at the fork). A watchdog kills a stage
whose resident memory passes ``--memory-guard-gib`` and records which stage could not finish.

Baselines in the same run: the same stages at ``--baseline-users`` (the first blocks of the same
population, in stores of their own); on that store the snapshot built as one chunk (the whole
store featurised at once, as the build did before it streamed); and the ingest again with one
transaction per spool batch (``--group-entries 1``, as the ingest did before it grouped). Stage
figures at the two sizes
give each stage's cost per list row, from which the result extrapolates to the original system's
data (1.5M users with 150 list rows each) and says which stage needs a bigger machine.
Goals: ingest >= 200,000 entries/s; snapshot build <= 16 GiB peak at 1.5M users.

    uv run python benchmarks/scale.py [--users 1500000] [--baseline-users 200000] [--block-users 100000]
        [--spool-batch-users 128] [--group-entries 250000] [--work-dir DIR] [--memory-guard-gib 16]

A quick check: ``--users 20000 --baseline-users 5000``. Writes ``benchmarks/results/scale.json``;
`benchmarks/readme_tables.py` renders it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import typer

from sprout.config import INGEST_GROUP_ENTRIES

STAGES = ("spool", "ingest", "snapshot", "batches")
MAL_USERS, MAL_ROWS_PER_USER = 1_500_000, 150  # the original system's crawl: ~225M list rows
GOALS = {"ingest_entries_per_s": 200_000, "snapshot_peak_bytes": 16 * 2**30}
RUN_ID = "scale-benchmark"
PROGRESS_BATCHES = 1000  # the ingest notes its elapsed time every this many batches
WHOLE_STORE = 2**62  # chunk_rows that puts every user in one chunk


def peak_resident_bytes() -> int:
    """This process's peak resident memory since it started (VmHWM; ru_maxrss where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# ---- the stages: each returns its figures; `run_stage` runs one in a child process -------------


def crawl_batches(population: Any, batch_users: int) -> Iterator[tuple[Any, Any, Any]]:
    """What a crawl of ``population`` publishes, ``batch_users`` users at a time, as the tables
    `Spool.publish_tables` takes: each public list in full, and a 'private' outcome (403) for each
    private account."""
    import numpy as np
    import pyarrow as pa

    from sprout.malsim.store_loader import population_tables

    now = population.now
    accounts, lists = population.state.users, population.state.lists
    living = np.flatnonzero(~accounts.deleted)  # [U]
    names = [accounts.names[u] for u in living.tolist()]
    private, sizes = accounts.private[living], lists.sizes()[living]  # [U], [U]
    entries = population_tables(population, now)["list_entries"].filter(pa.array(np.repeat(~private, sizes)))
    offsets = np.concatenate([[0], np.cumsum(np.where(private, 0, sizes))])  # [U + 1] rows published per user
    for a in range(0, len(names), batch_users):
        b = min(a + batch_users, len(names))
        hidden = private[a:b].tolist()
        public = [name for name, is_private in zip(names[a:b], hidden) if not is_private]
        withdrawn = [name for name, is_private in zip(names[a:b], hidden) if is_private]
        lists_table = pa.table({
            "username": pa.array(public, pa.string()), "full": pa.repeat(True, len(public)),
            "fetched_at": pa.repeat(pa.scalar(now), len(public)),
            "next_due_at": pa.repeat(pa.scalar(now + timedelta(days=7)), len(public)),
        })
        outcomes = pa.table({
            "username": pa.array(withdrawn, pa.string()), "state": pa.repeat("private", len(withdrawn)),
            "http_status": pa.repeat(pa.scalar(403, pa.int32()), len(withdrawn)),
            "at": pa.repeat(pa.scalar(now), len(withdrawn)),
            "next_due_at": pa.repeat(pa.scalar(now + timedelta(days=30)), len(withdrawn)),
        })
        yield lists_table, entries.slice(int(offsets[a]), int(offsets[b] - offsets[a])), outcomes


def spool_stage(spool_dir: str, users: int, block_users: int, batch_users: int, seed: int) -> dict[str, Any]:
    """Generate the population a block at a time and publish it as spool batches of ``batch_users``."""
    from sprout.crawl.spool import Spool
    from sprout.malsim.synthetic_population import synthetic_population_blocks

    spool = Spool(spool_dir)
    generate_s = publish_s = 0.0
    totals = {"users": 0, "public_lists": 0, "private_users": 0, "entries": 0, "batches": 0}
    started = time.perf_counter()
    for population in synthetic_population_blocks(users, block_users, seed):
        generated = time.perf_counter()
        generate_s += generated - started
        for lists, entries, outcomes in crawl_batches(population, batch_users):
            spool.publish_tables(lists, entries, outcomes, run_id=RUN_ID, worker="scale")
            totals["batches"] += 1
            totals["public_lists"] += lists.num_rows
            totals["private_users"] += outcomes.num_rows
            totals["entries"] += entries.num_rows
        totals["users"] += population.n_users
        del population
        started = time.perf_counter()
        publish_s += started - generated
    return {**totals, "generate_s": round(generate_s, 2), "publish_s": round(publish_s, 2),
            "seconds": round(generate_s + publish_s, 2), "spool_bytes": folder_bytes(Path(spool_dir))}


def ingest_stage(spool_dir: str, database: str, seed: int, group_entries: int = INGEST_GROUP_ENTRIES) -> dict[str, Any]:
    """Apply every spooled batch to a new store (the catalogue's metadata first, untimed), up to
    ``group_entries`` list rows per transaction."""
    from sprout.crawl.ingest import ingest_spool
    from sprout.crawl.spool import Spool
    from sprout.malsim.store_loader import population_tables
    from sprout.malsim.synthetic_population import synthetic_population
    from sprout.store import Store

    catalogue = synthetic_population(0, seed)  # the same shows as every block of the population
    spool = Spool(spool_dir)
    batches = len(spool.pending())
    committed, marks = [0], []  # marks: seconds since the start at every PROGRESS_BATCHES-th commit
    transactions, open_group = [0], [False]
    started = time.perf_counter()

    def progress(step: str, name: str) -> None:
        if step == "applied" and not open_group[0]:
            transactions[0] += 1
        open_group[0] = step == "applied"
        if step == "committed":
            committed[0] += 1
            if committed[0] % PROGRESS_BATCHES == 0:
                marks.append(round(time.perf_counter() - started, 1))
                print(f"ingest: {committed[0]:,}/{batches:,} batches, {marks[-1]:.0f} s", file=sys.stderr, flush=True)

    with Store.open(database) as store:
        with store.transaction() as connection:
            connection.from_arrow(population_tables(catalogue, catalogue.now)["anime"]).insert_into("anime")
        started = time.perf_counter()
        stats = asyncio.run(ingest_spool(spool, store, on_step=progress, group_entries=group_entries))
    seconds = time.perf_counter() - started  # closing included: the store is checkpointed then
    return {
        "seconds": round(seconds, 2), "batches": stats.batches, "users": stats.users, "lists": stats.lists,
        "entries": stats.entries, "entries_added": stats.entries_added,
        "entries_per_s": round(stats.entries / seconds),
        "s_per_million_entries": round(seconds / stats.entries * 1e6, 2),
        "store_bytes": Path(database).stat().st_size,
        "progress_every_batches": PROGRESS_BATCHES, "progress_s": marks, "group_entries": group_entries,
        "transactions": transactions[0],
    }


def snapshot_stage(database: str, out_dir: str, users: int, chunk_rows: int | None = None) -> dict[str, Any]:
    """`build_snapshot` of the store as of the population's day, with the default dataset rules
    (fewer held-out users below 10,000 users, so that quick runs can build too)."""
    from sprout.dataset import DatasetConfig, build_snapshot
    from sprout.dataset.snapshot import DEFAULT_CHUNK_ROWS
    from sprout.malsim.population import DEFAULT_NOW

    defaults = DatasetConfig()
    held_out = min(defaults.n_validation_users, defaults.n_test_users, users // 20)
    config = DatasetConfig(n_validation_users=held_out, n_test_users=held_out)
    started = time.perf_counter()
    chunk_rows = chunk_rows or DEFAULT_CHUNK_ROWS
    manifest = build_snapshot(database, out_dir, config, DEFAULT_NOW.date(), chunk_rows=chunk_rows)
    seconds = time.perf_counter() - started
    rows = manifest.source["rows_read"]
    return {
        "seconds": round(seconds, 2), "rows_read": rows, "rows_read_per_s": round(rows / seconds),
        "eligible_users": manifest.source["eligible_users"],
        "entries_kept": sum(split.entries for split in manifest.splits.values()),
        "train_users": manifest.splits["train"].users, "snapshot_id": manifest.snapshot_id,
        "snapshot_bytes": folder_bytes(Path(out_dir) / manifest.snapshot_id),
        "chunk_rows": chunk_rows,
    }


def batches_stage(snapshot_dir: str) -> dict[str, Any]:
    """Load the snapshot and build one epoch of training batches, as the training loop does."""
    import numpy as np

    from sprout.dataset import load_snapshot
    from sprout.training.batches import make_batch
    from sprout.training.config import TrainConfig
    from sprout.training.loop import batch_rows

    started = time.perf_counter()
    snapshot = load_snapshot(snapshot_dir)
    train, corpus_size = snapshot.split("train"), snapshot.manifest.corpus_size
    load_s = time.perf_counter() - started
    config = TrainConfig()
    batch_size = min(config.batch_size, train.n_users)
    steps = max(1, train.n_users // batch_size)
    order_s = make_s = 0.0
    examples = entries = 0
    for step in range(steps):
        began = time.perf_counter()
        rows = batch_rows(train.n_users, batch_size, config.seed, step)
        ordered = time.perf_counter()
        batch = make_batch(
            train.indptr, train.items, train.values, train.rated, rows, np.random.default_rng([config.seed, step, 1]),
            (config.dropout_min, config.dropout_max), corpus_size=corpus_size,
        )
        make_s += time.perf_counter() - ordered
        order_s += ordered - began
        examples += batch.size
        entries += int(batch.target_mask.sum())
    seconds = order_s + make_s
    return {
        "seconds": round(seconds, 2), "load_s": round(load_s, 2), "batches": steps, "batch_size": batch_size,
        "examples": examples, "entries": entries, "examples_per_s": round(examples / seconds),
        "batch_rows_s": round(order_s, 2), "make_batch_s": round(make_s, 2),
    }


STAGE_FUNCTIONS = {"spool": spool_stage, "ingest": ingest_stage, "snapshot": snapshot_stage, "batches": batches_stage}


def run_stage(name: str, memory_guard_bytes: int | None = None, **arguments: Any) -> dict[str, Any]:
    """Run one stage in a child process; its figures, ``peak_bytes`` and ``wall_s``, or ``error``."""
    command = [sys.executable, __file__, "stage", name, json.dumps(arguments)]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    killed = 0
    while child.poll() is None:
        resident = _resident_bytes(child.pid)
        if memory_guard_bytes and resident > memory_guard_bytes:
            killed = resident
            child.kill()
            break
        time.sleep(0.2)
    output = child.communicate()[0]
    wall_s = round(time.perf_counter() - started, 2)
    if killed:
        return {"error": f"stopped at {killed / 2**30:.1f} GiB resident, over the memory guard", "peak_bytes": killed,
                "wall_s": wall_s}
    if child.returncode:
        return {"error": f"exit status {child.returncode}", "wall_s": wall_s}
    return {**json.loads(output.strip().splitlines()[-1]), "wall_s": wall_s}


def _resident_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child_main(name: str, arguments: str) -> None:
    figures = STAGE_FUNCTIONS[name](**json.loads(arguments))
    print(json.dumps({**figures, "peak_bytes": peak_resident_bytes()}), flush=True)


# ---- the run ------------------------------------------------------------------------------------


def pipeline(folder: Path, users: int, block_users: int, batch_users: int, seed: int, guard: int | None,
             group_entries: int, baselines: bool = False) -> dict[str, Any]:
    """Every stage at ``users``, in ``folder``; a stage that fails ends the pipeline there. With
    ``baselines`` also the snapshot as one chunk, and the spool and ingest again with one
    transaction per spool batch."""
    folder.mkdir(parents=True, exist_ok=True)
    spool_dir, database, snapshots = folder / "spool", folder / "sprout.duckdb", folder / "snapshots"
    stages: dict[str, Any] = {}
    steps = [
        ("spool", "spool", {"spool_dir": str(spool_dir), "users": users, "block_users": block_users,
                            "batch_users": batch_users, "seed": seed}),
        ("ingest", "ingest", {"spool_dir": str(spool_dir), "database": str(database), "seed": seed,
                              "group_entries": group_entries}),
        ("snapshot", "snapshot", {"database": str(database), "out_dir": str(snapshots), "users": users}),
    ]
    if baselines:
        again, single_store = folder / "spool-again", folder / "one-per-batch.duckdb"
        steps += [
            ("snapshot_one_chunk", "snapshot", {"database": str(database), "out_dir": str(folder / "one-chunk"),
                                                "users": users, "chunk_rows": WHOLE_STORE}),
            ("spool_again", "spool", {"spool_dir": str(again), "users": users, "block_users": block_users,
                                      "batch_users": batch_users, "seed": seed}),
            ("ingest_one_per_batch", "ingest", {"spool_dir": str(again), "database": str(single_store),
                                                "seed": seed, "group_entries": 1}),
        ]
    for key, name, arguments in steps:
        print(f"{users:,} users: {key} ...", flush=True)
        stages[key] = run_stage(name, guard, **arguments)
        print(f"  {_summary(stages[key])}", flush=True)
        if "error" in stages[key]:
            return stages
    snapshot_dir = snapshots / stages["snapshot"]["snapshot_id"]
    print(f"{users:,} users: batches ...", flush=True)
    stages["batches"] = run_stage("batches", guard, snapshot_dir=str(snapshot_dir))
    print(f"  {_summary(stages['batches'])}", flush=True)
    return stages


def _summary(figures: dict[str, Any]) -> str:
    if "error" in figures:
        return f"failed: {figures['error']}"
    return f"{figures['seconds']:.1f} s, peak {figures['peak_bytes'] / 2**30:.2f} GiB"


def rows_of(stages: dict[str, Any]) -> int | None:
    return stages.get("spool", {}).get("entries")


def extrapolated(small: dict[str, Any], large: dict[str, Any], machine_bytes: int) -> dict[str, Any]:
    """Each stage's time and peak memory as ``a + b · list rows`` through the two sizes, at the
    original system's size, and whether that fits this machine. The ingest's time is
    ``rows · (a + b · rows)`` instead: each batch costs more the more users are stored already."""
    rows_small, rows_large = rows_of(small), rows_of(large)
    target_rows = MAL_USERS * MAL_ROWS_PER_USER
    stages: dict[str, Any] = {}
    for name in ("spool", "ingest", "snapshot", "batches"):
        a, b = small.get(name, {}), large.get(name, {})
        measured = a and b and "error" not in a and "error" not in b
        if not measured or not rows_small or not rows_large or rows_large <= rows_small:
            continue
        per_row = {}
        for figure in ("seconds", "peak_bytes"):
            slope = (b[figure] - a[figure]) / (rows_large - rows_small)
            per_row[figure] = max(b[figure] + slope * (target_rows - rows_large), b[figure])
        if name == "spool":  # generated and published a block at a time: memory follows the block, not the total
            per_row["peak_bytes"] = b["peak_bytes"]
        if name == "ingest":
            cost_small, cost_large = a["seconds"] / rows_small, b["seconds"] / rows_large  # s per row
            growth = (cost_large - cost_small) / (rows_large - rows_small)
            per_row["seconds"] = max(target_rows * (cost_large + growth * (target_rows - rows_large)), b["seconds"])
        stages[name] = {
            "seconds": round(per_row["seconds"]), "peak_bytes": round(per_row["peak_bytes"]),
            "bytes_per_row": round((b["peak_bytes"] - a["peak_bytes"]) / (rows_large - rows_small), 1),
            "fits_this_machine": per_row["peak_bytes"] < machine_bytes,
        }
    return {"users": MAL_USERS, "list_rows": target_rows, "machine_bytes": machine_bytes, "stages": stages}


def ingest_note(ingest: dict[str, Any], one_per_batch: dict[str, Any], batch_users: int) -> str:
    """Where the ingest's time goes, from its own figures: each transaction has a cost of its own,
    and that cost grows as the store fills."""
    marks, every = ingest.get("progress_s", []), ingest.get("progress_every_batches", PROGRESS_BATCHES)
    parts = [f"{ingest['batches']:,} spool batches of {batch_users} users in {ingest['transactions']:,} transactions"]
    if len(marks) >= 2:
        first = marks[0] / every
        last = (ingest["seconds"] - marks[-1]) / max(ingest["batches"] - every * len(marks), 1)
        parts.append(f"the time per batch rose from {first * 1000:.0f} ms (first {every:,} batches) to "
                     f"{last * 1000:.0f} ms (the last ones) as the store filled")
    if "entries_per_s" in one_per_batch:
        parts.append(f"one transaction per batch reached {one_per_batch['entries_per_s']:,} entries/s "
                     "at the baseline size")
    return "; ".join(parts)


def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def main(
    users: int = 1_500_000,
    baseline_users: int = 200_000,
    block_users: int = 100_000,
    spool_batch_users: int = typer.Option(128, help="Users per spool batch: the crawl's flush size."),
    group_entries: int = typer.Option(INGEST_GROUP_ENTRIES, help="List rows per ingest transaction."),
    seed: int = 5,
    memory_guard_gib: float = 16.0,
    work_dir: Path | None = typer.Option(None, help="Where stores and spools go (default: a temporary folder)."),
    keep: bool = typer.Option(False, help="Keep the work folder afterwards."),
) -> None:
    from results import write_result

    load_average = os.getloadavg()[0]
    guard = int(memory_guard_gib * 2**30) if memory_guard_gib > 0 else None
    root = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="sprout-scale-"))
    try:
        baseline = pipeline(root / f"users-{baseline_users}", baseline_users, block_users, spool_batch_users, seed,
                            guard, group_entries, baselines=True)
        shutil.rmtree(root / f"users-{baseline_users}", ignore_errors=True)
        full = pipeline(root / f"users-{users}", users, block_users, spool_batch_users, seed, guard, group_entries)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    document = result_document(full, baseline, users=users, baseline_users=baseline_users, block_users=block_users,
                               spool_batch_users=spool_batch_users, group_entries=group_entries, seed=seed,
                               guard=guard, load_average=load_average)
    print(json.dumps(document["notes"], indent=2))
    print(f"written to {write_result('scale', document)}")


def result_document(full: dict[str, Any], baseline: dict[str, Any], *, users: int, baseline_users: int,
                    block_users: int, spool_batch_users: int, group_entries: int, seed: int, guard: int | None,
                    load_average: float) -> dict[str, Any]:
    """The results file's body: stage figures at both sizes, the extrapolation and what it means."""
    machine = machine_memory_bytes()
    projection = extrapolated(baseline, full, machine)
    failed = {name: figures["error"] for name, figures in full.items() if "error" in figures}
    notes: dict[str, Any] = {"load_average_at_start": round(load_average, 2)}
    if failed:
        notes["stages_that_could_not_finish"] = failed
    snapshot = full.get("snapshot", {})
    if "peak_bytes" in snapshot and "error" not in snapshot:
        notes["snapshot_goal_met"] = snapshot["peak_bytes"] <= GOALS["snapshot_peak_bytes"]
    ingest = full.get("ingest", {})
    if "entries_per_s" in ingest:
        notes["ingest_goal_met"] = ingest["entries_per_s"] >= GOALS["ingest_entries_per_s"]
        notes["ingest"] = ingest_note(ingest, baseline.get("ingest_one_per_batch", {}), spool_batch_users)
    needs_more = [name for name, stage in projection["stages"].items() if not stage["fits_this_machine"]]
    notes["needs_a_bigger_machine_at_original_size"] = needs_more
    return {
        "figures": {"users": users, "list_rows": rows_of(full), "stages": full, "goals": GOALS},
        "baselines": {"users": baseline_users, "list_rows": rows_of(baseline), "stages": baseline},
        "extrapolation": projection,
        "settings": {"users": users, "baseline_users": baseline_users, "block_users": block_users,
                     "spool_batch_users": spool_batch_users, "group_entries": group_entries, "seed": seed,
                     "memory_guard_bytes": guard,
                     "machine_bytes": machine},
        "notes": notes,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["stage"]:  # a child process: one stage
        child_main(sys.argv[2], sys.argv[3])
    else:
        typer.run(main)
