"""The scale benchmark's stages at a tiny size: every stage runs, its figures add up, a stage in
a child process reports its own peak memory, and the results file renders as README's table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from sprout.store import Store

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def benchmark_module(name: str):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))  # the benchmarks import `results` as their neighbour
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def scale():
    return benchmark_module("scale")


def stages_at(scale, folder: Path, users: int) -> dict:
    spool, database, snapshots = folder / "spool", folder / "sprout.duckdb", folder / "snapshots"
    stages = {"spool": scale.spool_stage(str(spool), users, block_users=250, batch_users=64, seed=3)}
    stages["ingest"] = scale.ingest_stage(str(spool), str(database), seed=3, group_entries=1000)
    stages["snapshot"] = scale.snapshot_stage(str(database), str(snapshots), users)
    stages["batches"] = scale.batches_stage(str(snapshots / stages["snapshot"]["snapshot_id"]))
    for figures in stages.values():
        figures["peak_bytes"] = scale.peak_resident_bytes()
    return stages


def test_the_stages_at_a_tiny_size_add_up(scale, tmp_path, monkeypatch):
    small, large = stages_at(scale, tmp_path / "small", 300), stages_at(scale, tmp_path / "large", 600)
    spool, ingest, snapshot, batches = (large[name] for name in scale.STAGES)
    assert spool["users"] == 600 and spool["batches"] == 2 * 4 + 2  # blocks of 250, 250, 100 in batches of 64
    assert spool["public_lists"] + spool["private_users"] == 600 and spool["entries"] > 600 * 20
    assert not list((tmp_path / "large" / "spool" / "batches").glob("*.parquet"))  # ingest applied them all
    with Store.open(tmp_path / "large" / "sprout.duckdb", read_only=True) as store:
        stored = store.connection.execute("SELECT count(*) FROM list_entries").fetchone()[0]
    assert ingest["entries"] == ingest["entries_added"] == stored == spool["entries"]
    assert ingest["lists"] == spool["public_lists"] and ingest["entries_per_s"] > 0
    assert ingest["transactions"] == ingest["batches"]  # each batch holds more than the 1,000 rows a group may
    assert 0 < snapshot["rows_read"] <= stored and snapshot["entries_kept"] <= snapshot["rows_read"]
    assert snapshot["train_users"] == snapshot["eligible_users"] - 2 * 30  # 600 // 20 held-out users each
    assert batches["batches"] == 1 and batches["examples"] == snapshot["train_users"]  # fewer than 512 users
    assert 0 < batches["entries"] <= snapshot["entries_kept"]

    document = scale.result_document(large, small, users=600, baseline_users=300, block_users=250,
                                     spool_batch_users=64, group_entries=1000, seed=3, guard=None, load_average=0.5)
    projected = document["extrapolation"]["stages"]
    assert set(projected) == set(scale.STAGES) and all(stage["seconds"] >= 0 for stage in projected.values())
    results = benchmark_module("results")
    monkeypatch.setattr(results, "RESULTS", tmp_path / "results")
    path = results.write_result("scale", document)
    written = json.loads(path.read_text())
    assert path.parent == tmp_path / "results"
    assert {"commit", "date", "cpu", "figures", "baselines", "extrapolation", "settings", "notes"} <= set(written)
    assert written["figures"]["list_rows"] == spool["entries"] and written["baselines"]["users"] == 300
    table = benchmark_module("readme_tables").scale_table(written)
    assert "600 users" in table and f"{ingest['entries_per_s']:,} entries/s" in table


def test_a_stage_in_its_own_process_reports_its_own_peak(scale, tmp_path):
    scale.spool_stage(str(tmp_path / "spool"), 200, block_users=200, batch_users=100, seed=4)
    figures = scale.run_stage("ingest", None, spool_dir=str(tmp_path / "spool"), database=str(tmp_path / "db"), seed=4)
    assert figures["batches"] == 2 and figures["wall_s"] >= figures["seconds"]
    assert 20 * 2**20 < figures["peak_bytes"] < 4 * 2**30
    guarded = scale.run_stage("ingest", 2**20, spool_dir=str(tmp_path / "spool"), database=str(tmp_path / "x"), seed=4)
    assert "memory guard" in guarded["error"]  # no Python process fits in 1 MiB: the watchdog stops it
