"""Registry stage changes under partial failure: a process killed (SIGKILL) at every durable step
of registration, promotion, rollback and withdrawal, and a DuckDB file held by another process.

After each kill the store shows exactly one champion (the one before or the one after), and a
retry of the same request finishes the job: labels mirror the stages and every event is in the
history exactly once.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from artifact_helpers import untrained_artifacts
from bentos.registry import ModelRegistry
from sprout.registry import ARCHIVED, CHALLENGER, CHAMPION
from sprout.store import Store

DATASET = "cd" * 32

# Runs one registry request in a child process and SIGKILLs itself at the N-th durable step
# (0: never); prints the number of steps reached when it finishes.
CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from bentos.registry import ModelRegistry

    store_dir, database, kill_at, request, *args = sys.argv[1:]
    kill_at, reached = int(kill_at), []

    class Killed(ModelRegistry):
        def _reached(self, step):
            reached.append(step)
            if len(reached) == kill_at:
                os.kill(os.getpid(), 9)

    registry = Killed(store_dir, events=Path(database))
    if request == "register":
        registry.register(args[0], dataset_hash="cd" * 32, wandb_run_id=None, metrics={"ndcg@100": 0.3})
    elif request == "promote":
        registry.promote(args[0], "promote " + args[0])
    elif request == "rollback":
        registry.rollback("regression", expected_champion=args[0])
    elif request == "withdraw":
        registry.withdraw(args[0], "verification failed")
    print(len(reached))
    """
)


@pytest.fixture(autouse=True)
def no_usage_tracking(monkeypatch):
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> list[Path]:
    """Three model folders with different weights on one tiny snapshot (nothing trained)."""
    return untrained_artifacts(tmp_path_factory.mktemp("home"), 3)[1]


def run_child(store_dir: Path, database: Path, kill_at: int, request: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(store_dir), str(database), str(kill_at), request, *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def register(registry: ModelRegistry, folder: Path) -> str:
    return registry.register(folder, dataset_hash=DATASET, wandb_run_id=None, metrics={"ndcg@100": 0.3})


def v1_archived_v2_champion(folder: Path, artifacts: list[Path]) -> tuple[Path, Path, list[str]]:
    """A store where v1 was champion, v2 replaced it, and v3 is a registered challenger."""
    store_dir, database = folder / "models", folder / "sprout.duckdb"
    with Store.open(database):
        pass
    registry = ModelRegistry(store_dir, events=database)
    versions = [register(registry, path) for path in artifacts]
    registry.promote(versions[0], "first")
    registry.promote(versions[1], "second")
    return store_dir, database, versions


def stages(store_dir: Path) -> dict[str, str]:
    return {record.version: record.stage for record in ModelRegistry(store_dir).list()}


def label_stages(registry: ModelRegistry) -> dict[str, str]:
    """Stages as BentoML's own labels show them (the mirror)."""
    return {version: registry._model(version).info.labels["stage"] for version in registry.versions()}


def events(database: Path) -> Counter:
    with Store.open(database, read_only=True) as store:
        return Counter((event.kind, event.model_version) for event in store.model_events())


def steps_of(folder: Path, artifacts: list[Path], request: str, *args: str) -> int:
    """How many durable steps the request takes when nothing goes wrong."""
    store_dir, database, _ = v1_archived_v2_champion(folder, artifacts)
    done = run_child(store_dir, database, 0, request, *args)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.parametrize("request_name", ["promote", "rollback", "withdraw"])
def test_a_stage_change_killed_at_any_step_is_whole_and_a_retry_finishes_it(tmp_path, artifacts, request_name):
    # v1 archived, v2 champion, v3 challenger. Promote v3; roll back from v2 to v1; and a
    # withdrawal of v3 just after its promotion, which must bring back v2 (the champion it replaced).
    def prepare(folder: Path) -> tuple[Path, Path, list[str]]:
        store_dir, database, versions = v1_archived_v2_champion(folder, artifacts)
        if request_name == "withdraw":
            ModelRegistry(store_dir, events=database).promote(versions[2], "promoted, then found broken")
        return store_dir, database, versions

    template = tmp_path / "template"
    store_dir, database, versions = prepare(template)
    v1, v2, v3 = versions
    argument = {"promote": v3, "rollback": v2, "withdraw": v3}[request_name]
    before = {"promote": v2, "rollback": v2, "withdraw": v3}[request_name]
    after = {"promote": v3, "rollback": v1, "withdraw": v2}[request_name]
    expected_stages = {
        "promote": {v1: ARCHIVED, v2: ARCHIVED, v3: CHAMPION},
        "rollback": {v1: CHAMPION, v2: ARCHIVED, v3: CHALLENGER},
        "withdraw": {v1: ARCHIVED, v2: CHAMPION, v3: ARCHIVED},
    }[request_name]
    baseline_events = events(database)

    clean = tmp_path / "clean"
    shutil.copytree(template, clean)
    done = run_child(clean / "models", clean / "sprout.duckdb", 0, request_name, argument)
    assert done.returncode == 0, done.stderr
    n_steps = int(done.stdout.split()[-1])
    assert n_steps >= 4  # commit, labels of at least two models, delivery, outbox cleared
    expected_events = events(clean / "sprout.duckdb")
    assert sum((expected_events - baseline_events).values()) >= 2

    for kill_at in range(1, n_steps + 1):
        folder = tmp_path / f"killed-{kill_at}"
        shutil.copytree(template, folder)
        killed = run_child(folder / "models", folder / "sprout.duckdb", kill_at, request_name, argument)
        assert killed.returncode == -9, (kill_at, killed.stderr)

        registry = ModelRegistry(folder / "models", events=folder / "sprout.duckdb")
        journal = registry._journal()
        assert [version for version, s in journal.models.items() if s.stage == CHAMPION] in ([before], [after])
        assert registry.champion().version in (before, after)

        retry = {"promote": lambda: registry.promote(v3, "promote " + v3),
                 "rollback": lambda: registry.rollback("regression", expected_champion=v2),
                 "withdraw": lambda: registry.withdraw(v3, "verification failed")}[request_name]
        retry()
        assert stages(folder / "models") == expected_stages, kill_at
        assert registry.champion().version == after
        assert label_stages(registry) == expected_stages, kill_at
        assert registry.pending_events() == 0
        assert events(folder / "sprout.duckdb") == expected_events, kill_at  # each event once


def test_a_registration_killed_at_any_step_leaves_no_torn_version(tmp_path, artifacts):
    template = tmp_path / "template"
    template.mkdir()
    with Store.open(template / "sprout.duckdb"):
        pass
    registry = ModelRegistry(template / "models", events=template / "sprout.duckdb")
    first = register(registry, artifacts[0])
    clean = tmp_path / "clean"
    shutil.copytree(template, clean)
    done = run_child(clean / "models", clean / "sprout.duckdb", 0, "register", str(artifacts[1]))
    n_steps = int(done.stdout.split()[-1])
    assert n_steps >= 3  # staged, placed, committed (then delivered, outbox cleared)

    for kill_at in range(1, n_steps + 1):
        folder = tmp_path / f"killed-{kill_at}"
        shutil.copytree(template, folder)
        assert run_child(folder / "models", folder / "sprout.duckdb", kill_at, "register", str(artifacts[1])).returncode == -9
        registry = ModelRegistry(folder / "models", events=folder / "sprout.duckdb")
        listed = [record.version for record in registry.list()]
        assert listed[0] == first and len(listed) <= 2  # the new version is whole or absent
        second = register(registry, artifacts[1])
        assert [record.version for record in registry.list()] == [first, second]
        assert not [p for p in (folder / "models" / registry.name).iterdir() if p.name.startswith(".staging")]
        assert registry.get(second).metadata["metrics"] == {"ndcg@100": 0.3}
        assert events(folder / "sprout.duckdb") == Counter({("registered", first): 1, ("registered", second): 1})


def test_a_held_database_delays_the_history_never_the_stage_change(tmp_path, artifacts):
    store_dir, database, (v1, v2, v3) = v1_archived_v2_champion(tmp_path, artifacts)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from sprout.store import Store\n"
         "with Store.open(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)", str(database)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        registry = ModelRegistry(store_dir, events=database)
        began = time.monotonic()
        registry.record_event("gate", v3, reason="passed", details={"checks": []})
        registry.promote(v3, "gate passed")
        assert registry.champion().version == v3
        registry.rollback("regression", expected_champion=v3)
        registry.rollback("a retry of the same request", expected_champion=v3)  # a no-op: v3 is not the champion
        assert time.monotonic() - began < 30  # each request waits a moment for the database, no more
        assert registry.champion().version == v2
        assert registry.pending_events() == 5  # gate, promoted v3, archived v2, promoted v2, rolled back v3
    finally:
        holder.kill()
        holder.wait()
    assert registry.deliver_events() == 0
    recorded = events(database)
    assert recorded[("gate", v3)] == 1 and recorded[("rolled_back", v3)] == 1 and recorded[("promoted", v2)] == 2
    assert registry.deliver_events() == 0 and events(database) == recorded


def test_a_store_without_a_journal_is_read_from_its_labels_then_journaled(tmp_path, artifacts):
    store_dir, database, (v1, v2, v3) = v1_archived_v2_champion(tmp_path, artifacts)
    registry = ModelRegistry(store_dir, events=database)
    registry.journal_path.unlink()  # a store written before stage journals existed
    assert registry.champion().version == v2
    assert stages(store_dir) == {v1: ARCHIVED, v2: CHAMPION, v3: CHALLENGER}
    registry.rollback("regression")
    assert registry.journal_path.is_file()
    assert registry.champion().version == v1 and label_stages(registry)[v2] == ARCHIVED


def test_retried_operation_ids_apply_once(tmp_path, artifacts):
    store_dir, database, (v1, v2, v3) = v1_archived_v2_champion(tmp_path, artifacts)
    registry = ModelRegistry(store_dir, events=database)
    registry.promote(v3, "third")
    first = registry.rollback("regression", operation_id="run-42")
    again = registry.rollback("regression", operation_id="run-42")
    assert first == again and registry.champion().version == v2  # not v1: the retry was not a second rollback
