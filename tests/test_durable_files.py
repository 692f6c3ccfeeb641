"""Checkpoints, snapshots and the LATEST pointer survive a kill at any instant.

Each test puts on disk what a kill (or a power loss) can leave behind, either by killing a real
process with SIGKILL mid-save or by building the exact intermediate state, then checks that
resuming or loading picks the right data.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from sprout.dataset import build_snapshot, load_snapshot
from sprout.dataset.snapshot_format import STALE_STAGING_S, SnapshotError
from sprout.durable_files import write_text_atomically
from sprout.training.checkpoints import LEAVES_FILE, META_FILE, CheckpointError, Checkpoints, load_pytree
from sprout.training.run import resolve_snapshot
from sprout.workspace import Workspace

LATEST_SNAPSHOT = Workspace(Path()).latest_snapshot_pointer.name
from test_dataset import CONFIG, SNAPSHOT_DATE, make_store

LIKE = {"params": {"w": jnp.zeros((64, 64)), "b": jnp.zeros(64)}}


def tree(step: int) -> dict:
    """A checkpoint whose every value is its step, so a mix of two saves shows."""
    return {"params": {"w": jnp.full((64, 64), float(step)), "b": jnp.full(64, float(step))}}


def assert_consistent(trees: dict, meta: dict) -> int:
    step = meta["step"]
    assert float(trees["params"]["w"].min()) == float(trees["params"]["w"].max()) == step
    assert float(trees["params"]["b"].min()) == step
    return step


# ---- checkpoints ---------------------------------------------------------------------------

SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from sprout.training.checkpoints import Checkpoints

    checkpoints = Checkpoints(sys.argv[1])
    step = 0
    while True:
        step += 1
        value = np.float32(step)
        checkpoints.save({"params": {"w": np.full((256, 1024), value), "b": np.full(64, value)}}, {"step": step})
        print(step, flush=True)
    """
)


@pytest.mark.parametrize("delay_s", [0.0, 0.013, 0.031])
def test_a_kill_9_mid_save_leaves_the_last_finished_checkpoint_or_the_one_before(tmp_path, delay_s):
    like = {"params": {"w": jnp.zeros((256, 1024)), "b": jnp.zeros(64)}}
    child = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        finished = [int(child.stdout.readline()) for _ in range(3)]
        time.sleep(delay_s)  # lands somewhere inside one of the next saves
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finished += [int(line) for line in child.stdout.read().split()]
    resumed = Checkpoints(tmp_path).resume(like)
    assert resumed is not None
    trees, meta = resumed
    step = meta["step"]
    assert float(trees["params"]["w"].min()) == float(trees["params"]["w"].max()) == step
    # the newest finished save, or the one the kill interrupted if it got as far as its rename
    assert finished[-1] <= step <= finished[-1] + 1
    assert not list(tmp_path.glob(".latest.staging-*"))  # resuming removed what the kill left


def saved_twice(folder: Path) -> Checkpoints:
    checkpoints = Checkpoints(folder)
    checkpoints.save(tree(1), {"step": 1})
    checkpoints.save(tree(2), {"step": 2})
    return checkpoints


def test_killed_between_the_two_renames_resumes_from_the_previous_checkpoint(tmp_path, caplog):
    checkpoints = saved_twice(tmp_path)
    # the state between "latest -> latest.previous" and "staging -> latest" of the third save
    staging = tmp_path / ".latest.staging-killed"
    staging.mkdir()
    (staging / LEAVES_FILE).write_bytes(b"PK\x03\x04 half a zip")
    checkpoints.previous.rename(tmp_path / "gone")
    checkpoints.latest.rename(checkpoints.previous)
    assert checkpoints.exists()
    with caplog.at_level(logging.WARNING):
        trees, meta = checkpoints.resume(LIKE)
    assert assert_consistent(trees, meta) == 2
    assert not staging.exists() and "did not finish" in caplog.text
    checkpoints.save(tree(3), {"step": 3})  # saving again works from that state
    assert assert_consistent(*checkpoints.load(LIKE)) == 3
    assert assert_consistent(*load_pytree(checkpoints.previous, LIKE)) == 2


@pytest.mark.parametrize("keep", [0, 22, 0.5, -10])
def test_a_torn_leaves_file_is_skipped_for_the_previous_checkpoint(tmp_path, caplog, keep):
    checkpoints = saved_twice(tmp_path)
    leaves = checkpoints.latest / LEAVES_FILE
    data = leaves.read_bytes()
    leaves.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError):
        load_pytree(checkpoints.latest, LIKE)
    with caplog.at_level(logging.WARNING):
        trees, meta = checkpoints.resume(LIKE)
    assert assert_consistent(trees, meta) == 1
    assert "unreadable checkpoint" in caplog.text


def test_a_torn_leaves_file_without_a_recorded_hash_is_an_error_not_a_crash(tmp_path):
    """Checkpoints written before the hash existed: the zip reader's own errors are caught."""
    checkpoints = saved_twice(tmp_path)
    header = json.loads((checkpoints.latest / META_FILE).read_text())
    del header["leaves_sha256"]
    (checkpoints.latest / META_FILE).write_text(json.dumps(header))
    assert assert_consistent(*load_pytree(checkpoints.latest, LIKE)) == 2
    leaves = checkpoints.latest / LEAVES_FILE
    leaves.write_bytes(leaves.read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="cannot read"):
        load_pytree(checkpoints.latest, LIKE)
    assert assert_consistent(*checkpoints.load(LIKE)) == 1


def test_when_no_checkpoint_is_readable_the_run_starts_over(tmp_path, caplog):
    checkpoints = saved_twice(tmp_path)
    (checkpoints.latest / META_FILE).write_text('{"meta": ')
    (checkpoints.previous / LEAVES_FILE).write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert checkpoints.resume(LIKE) is None
    assert caplog.text.count("unreadable checkpoint") == 2
    with pytest.raises(CheckpointError, match="latest.previous"):
        checkpoints.load(LIKE)


# ---- snapshots and the LATEST pointer ------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    with make_store(tmp_path / "db" / "sprout.duckdb") as store:
        yield store


def test_a_truncated_snapshot_array_file_is_refused_and_rebuilt(store, tmp_path):
    out = tmp_path / "snapshots"
    manifest = build_snapshot(store, out, CONFIG, SNAPSHOT_DATE)
    arrays = out / manifest.snapshot_id / "arrays.npz"
    intact = load_snapshot(out / manifest.snapshot_id).split("train").values
    arrays.write_bytes(arrays.read_bytes()[:100])
    with pytest.raises(SnapshotError, match="arrays.npz"):
        load_snapshot(out / manifest.snapshot_id)
    assert build_snapshot(store, out, CONFIG, SNAPSHOT_DATE) == manifest  # rebuilt in place
    np.testing.assert_array_equal(load_snapshot(out / manifest.snapshot_id).split("train").values, intact)
    assert [p.name for p in out.iterdir()] == [manifest.snapshot_id]


def test_a_partial_snapshot_folder_is_never_reused(store, tmp_path):
    """What a killed build of older code left: the folder in place, no manifest yet."""
    out = tmp_path / "snapshots"
    manifest = build_snapshot(store, out, CONFIG, SNAPSHOT_DATE)
    folder = out / manifest.snapshot_id
    (folder / "manifest.json").unlink()
    (folder / "corpus.json").write_text("")
    assert build_snapshot(store, out, CONFIG, SNAPSHOT_DATE) == manifest
    assert load_snapshot(folder).snapshot_id == manifest.snapshot_id


def test_rewritten_arrays_with_a_matching_file_hash_are_rebuilt_too(store, tmp_path):
    import hashlib

    out = tmp_path / "snapshots"
    manifest = build_snapshot(store, out, CONFIG, SNAPSHOT_DATE)
    folder = out / manifest.snapshot_id
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    intact = arrays["train.values"]
    arrays["train.values"] = intact + np.float32(1)
    np.savez(folder / "arrays.npz", **arrays)
    data = json.loads((folder / "manifest.json").read_text())
    data["files"]["arrays.npz"] = hashlib.sha256((folder / "arrays.npz").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(data))
    build_snapshot(store, out, CONFIG, SNAPSHOT_DATE)
    values = load_snapshot(folder).split("train").values
    np.testing.assert_array_equal(values, intact)


def test_stale_staging_folders_of_killed_builds_are_removed(store, tmp_path):
    out = tmp_path / "snapshots"
    out.mkdir()
    stale, fresh = out / ".0123456789abcdef-killed", out / ".fedcba9876543210-building"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "arrays.npz").write_bytes(b"PK")
    old = time.time() - STALE_STAGING_S - 60
    os.utime(stale, (old, old))
    manifest = build_snapshot(store, out, CONFIG, SNAPSHOT_DATE)
    assert sorted(p.name for p in out.iterdir()) == sorted([manifest.snapshot_id, fresh.name])


def test_the_latest_pointer_is_replaced_whole(tmp_path):
    pointer = tmp_path / LATEST_SNAPSHOT
    write_text_atomically(pointer, "a" * 16)
    write_text_atomically(pointer, "b" * 16)
    assert pointer.read_text() == "b" * 16
    assert [p.name for p in tmp_path.iterdir()] == [LATEST_SNAPSHOT]  # no temporary left


@pytest.mark.parametrize("torn", ["", "3fa", "\x00\x00\x00\x00", "../../etc"])
def test_a_torn_latest_pointer_falls_back_to_the_newest_snapshot(store, tmp_path, caplog, torn):
    home = tmp_path / "home"
    older = build_snapshot(store, home / "snapshots", CONFIG.model_copy(update={"seed": 1}), SNAPSHOT_DATE)
    newer = build_snapshot(store, home / "snapshots", CONFIG, SNAPSHOT_DATE)
    then = time.time() - 3600
    os.utime(home / "snapshots" / older.snapshot_id / "manifest.json", (then, then))
    write_text_atomically(home / "snapshots" / LATEST_SNAPSHOT, older.snapshot_id)
    assert resolve_snapshot(home, None).name == older.snapshot_id  # an intact pointer is followed
    (home / "snapshots" / LATEST_SNAPSHOT).write_text(torn)
    with caplog.at_level(logging.WARNING):
        assert resolve_snapshot(home, None).name == newer.snapshot_id
    assert "names no readable snapshot" in caplog.text


def test_without_any_snapshot_the_pointer_fallback_says_to_build_one(tmp_path):
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "snapshots" / LATEST_SNAPSHOT).write_text("3fa")
    with pytest.raises(FileNotFoundError, match="sprout dataset build"):
        resolve_snapshot(tmp_path, None)
