"""Dataset build benchmark: entries/s and peak memory of `build_snapshot` on a synthetic store.

Setup (not timed): a synthetic population is bulk-loaded into a fresh DuckDB file through
Arrow. The build then runs in a child process that does nothing else, so its peak resident
memory (``ru_maxrss``) is the build's own. Baseline in the same run: the normalisation as a
per-user, per-entry Python loop on a subsample, against the vectorised code on the same users,
scores and statuses (5% dropped); the loop is handed Python lists and the vectorised code numpy
arrays, both prepared before timing, and the vectorised code runs once untimed first.
Goals: >= 1,000,000 entries/s on 2 cores, <= 4 GiB peak.

    uv run python benchmarks/dataset_build.py [--users 200000] [--seed 5] [--subsample-users 2000]

Writes ``benchmarks/results/dataset_build.json``; `benchmarks/readme_tables.py` renders it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import typer

from sprout.dataset import DatasetConfig, build_snapshot, load_snapshot
from sprout.dataset.features import DROPPED, normalised_values
from sprout.malsim.store_loader import load_population
from sprout.malsim.synthetic_population import synthetic_population
from sprout.store import Store


def python_loop_normalise(indptr, scores, status) -> list[float]:
    """The rules written the obvious way, one user and one entry at a time."""
    values = []
    for u in range(len(indptr) - 1):
        rows = range(indptr[u], indptr[u + 1])
        rated = [float(scores[i]) for i in rows if scores[i] > 0]
        mu = sum(rated) / len(rated) if rated else 5.0
        sigma = math.sqrt(sum((s - mu) ** 2 for s in rated) / len(rated)) + 1e-6 if rated else 2.0
        alpha = min(max(sigma / 2.6, 0.3), 0.8)
        for i in rows:
            s = float(scores[i]) if scores[i] > 0 else (mu - 1.5 * sigma if status[i] == DROPPED else mu)
            z = min(max((s - mu) / sigma, -3.0), 3.0)
            a = min(max((s - 5.5) / 2.5, -2.5), 2.0)
            values.append(min(max(alpha * z + (1 - alpha) * a, -2.5), 2.5))
    return values


def build_only(database: Path, out_dir: Path, snapshot_date: str) -> None:
    """Child process: build once and report time and peak memory as JSON."""
    started = time.perf_counter()
    manifest = build_snapshot(database, out_dir, DatasetConfig(), date.fromisoformat(snapshot_date))
    seconds = time.perf_counter() - started
    from scale import peak_resident_bytes  # ru_maxrss of a child would count the parent's size at the fork

    peak_bytes = peak_resident_bytes()
    print(json.dumps({"seconds": seconds, "peak_bytes": peak_bytes, "manifest": manifest.model_dump(mode="json")}))


def main(users: int = 200_000, seed: int = 5, subsample_users: int = 2000) -> None:
    from results import write_result

    load_average = os.getloadavg()[0]  # other jobs on the machine share its cores
    with tempfile.TemporaryDirectory(prefix="sprout-dataset-bench-") as folder:
        database, out_dir = Path(folder) / "sprout.duckdb", Path(folder) / "snapshots"
        started = time.perf_counter()
        population = synthetic_population(users, seed=seed)
        generated = time.perf_counter() - started
        with Store.open(database) as store:
            loaded = load_population(store, population, population.now)
        snapshot_date = population.now.date().isoformat()
        del population
        print(f"setup: {users:,} users generated in {generated:.1f}s, "
              f"{loaded['list_entries']:,} list rows loaded in {time.perf_counter() - started - generated:.1f}s")

        child = subprocess.run(
            [sys.executable, __file__, "build-only", str(database), str(out_dir), snapshot_date],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        report = json.loads(child.stdout.strip().splitlines()[-1])
        manifest = report["manifest"]
        rows = manifest["source"]["rows_read"]
        kept = sum(split["entries"] for split in manifest["splits"].values())
        print(f"build_snapshot: {report['seconds']:.2f}s for {rows:,} rows read "
              f"({manifest['source']['eligible_users']:,} eligible users, {kept:,} entries kept)")
        print(f"  {rows / report['seconds']:,.0f} entries/s of rows read (goal >= 1,000,000/s); "
              f"{loaded['list_entries'] / report['seconds']:,.0f} list rows/s of the whole store")
        print(f"  peak memory {report['peak_bytes'] / 2**30:.2f} GiB (goal <= 4 GiB)")

        train = load_snapshot(out_dir / manifest["snapshot_id"]).split("train")
        n_users = min(subsample_users, train.n_users)
        end = int(train.indptr[n_users])
        indptr, scores = train.indptr[: n_users + 1], train.scores[:end]
        # The loop and the vectorised code see the same statuses: completed (1), 5% dropped.
        status = np.where(np.random.default_rng(seed).random(end) < 0.05, DROPPED, 1).astype(np.int8)
        lists = indptr.tolist(), scores.tolist(), status.tolist()
        normalised_values(indptr, scores, status)  # untimed first call
        started = time.perf_counter()
        looped = python_loop_normalise(*lists)
        loop_s = time.perf_counter() - started
        started = time.perf_counter()
        vectorised = normalised_values(indptr, scores, status)[0]
        vector_s = time.perf_counter() - started
        assert np.allclose(looped, vectorised, atol=1e-5)
        print(f"normalisation on {n_users:,} users / {end:,} entries: Python loop {end / loop_s:,.0f} entries/s, "
              f"vectorised {end / vector_s:,.0f} entries/s ({loop_s / vector_s:,.0f}x)")

    path = write_result("dataset_build", {
        "figures": {
            "build_s": round(report["seconds"], 2), "rows_read": rows,
            "rows_read_per_s": round(rows / report["seconds"]), "peak_bytes": report["peak_bytes"],
            "eligible_users": manifest["source"]["eligible_users"], "entries_kept": kept,
            "normalisation_entries_per_s": round(end / vector_s),
            "goals": {"rows_read_per_s": 1_000_000, "peak_bytes": 4 * 2**30},
        },
        "baselines": {"python_loop_normalisation": {"entries_per_s": round(end / loop_s)}},
        "settings": {"users": users, "list_rows": loaded["list_entries"], "seed": seed,
                     "normalisation_users": n_users, "normalisation_entries": end},
        "notes": {"load_average_at_start": round(load_average, 2), "setup_s": round(generated, 1)},
    })
    print(f"written to {path}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["build-only"]:  # the child process
        del sys.argv[1]
        typer.run(build_only)
    else:
        typer.run(main)
