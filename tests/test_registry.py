"""The model registry on a real BentoML store and a real DuckDB file: stages, history, safety."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from artifact_helpers import untrained_artifacts
from bentos.registry import ArtifactMismatch, ModelRegistry
from sprout.registry import (
    ARCHIVED,
    CHALLENGER,
    CHAMPION,
    NoPreviousChampion,
    StageState,
    UnknownVersion,
    plan_promotion,
    plan_rollback,
)
from sprout.store import Store
from sprout.model.artifact import read_model_artifact

DATASET = "ab" * 32


@pytest.fixture(autouse=True)
def no_usage_tracking(monkeypatch):
    monkeypatch.setenv("BENTOML_DO_NOT_TRACK", "True")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> tuple[Path, Path]:
    """Two model folders with different weights, on one tiny snapshot; nothing is trained."""
    _, folders = untrained_artifacts(tmp_path_factory.mktemp("home"), 2)
    return folders[0], folders[1]


@pytest.fixture
def store(tmp_path) -> Store:
    with Store.open(tmp_path / "sprout.duckdb") as opened:
        yield opened


@pytest.fixture
def registry(tmp_path, store) -> ModelRegistry:
    return ModelRegistry(tmp_path / "bentoml" / "models", events=store)


def register(registry: ModelRegistry, folder: Path, ndcg: float) -> str:
    return registry.register(folder, dataset_hash=DATASET, wandb_run_id="run-1", metrics={"ndcg@100": ndcg})


def test_register_copies_safe_files_with_labels(registry, artifacts, store):
    version = register(registry, artifacts[0], 0.31)
    assert register(registry, artifacts[0], 0.31) == version  # idempotent
    record = registry.get(version)
    assert record.stage == CHALLENGER
    assert record.labels["dataset"] == DATASET[:16] and record.labels["wandb_run"] == "run-1"
    assert record.metadata["metrics"] == {"ndcg@100": 0.31}
    assert record.metadata["parameters"] > 0
    model, document = read_model_artifact(registry.artifact_path(version))
    assert document["version"] == version
    assert [event.kind for event in store.model_events()] == ["registered"]
    assert registry.champion() is None


def test_promotion_history_and_rollback(registry, artifacts, store):
    a = register(registry, artifacts[0], 0.30)
    b = register(registry, artifacts[1], 0.35)
    with pytest.raises(NoPreviousChampion):
        registry.rollback("nothing to roll back to")

    registry.promote(a, "first champion", {"ndcg@100": 0.30})
    assert registry.champion().version == a
    with pytest.raises(NoPreviousChampion):
        registry.rollback("a has no predecessor")

    registry.promote(b, "gate passed", {"ndcg@100": 0.35, "margin": 0.05})
    stages = {record.version: record.stage for record in registry.list()}
    assert stages == {a: ARCHIVED, b: CHAMPION} and registry.champion().version == b
    assert registry.promote(b, "again") == []

    registry.rollback("latency regression", {"p99_ms": 80.0})
    stages = {record.version: record.stage for record in registry.list()}
    assert stages == {a: CHAMPION, b: ARCHIVED} and registry.champion().version == a
    with pytest.raises(NoPreviousChampion):  # b was rolled back: never restored by a rollback
        registry.rollback("again")

    history = [(e.kind, e.model_version, e.from_stage, e.to_stage, e.reason) for e in reversed(store.model_events())]
    assert history == [
        ("registered", a, None, CHALLENGER, "registered"),
        ("registered", b, None, CHALLENGER, "registered"),
        ("promoted", a, CHALLENGER, CHAMPION, "first champion"),
        ("promoted", b, CHALLENGER, CHAMPION, "gate passed"),
        ("archived", a, CHAMPION, ARCHIVED, "gate passed"),
        ("promoted", a, ARCHIVED, CHAMPION, "latency regression"),
        ("rolled_back", b, CHAMPION, ARCHIVED, "latency regression"),
    ]
    numbers = {(e.kind, e.model_version): e.details for e in store.model_events()}
    assert numbers[("promoted", b)] == {"ndcg@100": 0.35, "margin": 0.05}
    assert numbers[("rolled_back", b)] == {"p99_ms": 80.0}
    # The table is there for operators' SQL too.
    rows = store.connection.execute("SELECT kind FROM model_events ORDER BY \"at\", recorded_order").fetchall()
    assert [kind for (kind,) in rows] == [h[0] for h in history]

    # A second registry on the same folder (a server) sees the same champion.
    assert ModelRegistry(registry.store_dir).champion().version == a


def test_store_holds_only_arrays_json_and_yaml(registry, artifacts):
    for folder in artifacts:
        register(registry, folder, 0.3)
    registry.promote(registry.list()[0].version, "first")
    names = [path for path in (registry.store_dir / registry.name).rglob("*") if path.is_file()]
    model_files = [path for path in names if path.name != "latest"]  # BentoML's pointer to the newest
    assert model_files and {path.suffix for path in model_files} <= {".npz", ".json", ".yaml"}


def test_a_poller_never_sees_zero_champions(registry, artifacts):
    a = register(registry, artifacts[0], 0.30)
    b = register(registry, artifacts[1], 0.35)
    registry.promote(a, "first")
    reader = ModelRegistry(registry.store_dir)
    seen: list[str | None] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            champion = reader.champion()
            seen.append(champion.version if champion else None)

    thread = threading.Thread(target=poll)
    thread.start()
    try:
        for _ in range(15):
            registry.promote(b, "swap")
            registry.promote(a, "swap back")
    finally:
        done.set()
        thread.join()
    assert len(seen) > 10 and None not in seen and set(seen) == {a, b}


def test_clear_errors(registry, artifacts, tmp_path):
    with pytest.raises(UnknownVersion):
        registry.get("20990101-000000-deadbeef")
    with pytest.raises(UnknownVersion):
        registry.promote("20990101-000000-deadbeef", "no such model")

    broken = tmp_path / "broken"
    broken.mkdir()
    for path in artifacts[0].iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "weights.npz").write_bytes(b"not the weights")
    with pytest.raises(ArtifactMismatch, match="hash"):
        register(registry, broken, 0.3)

    document = json.loads((broken / "model.json").read_text())
    document["files"]["weights.pkl"] = "0" * 64
    (broken / "model.json").write_text(json.dumps(document))
    with pytest.raises(ArtifactMismatch, match="not an allowed"):
        register(registry, broken, 0.3)
    assert registry.list() == []

    register(registry, artifacts[0], 0.3)
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for path in artifacts[1].iterdir():
        (renamed / path.name).write_bytes(path.read_bytes())
    document = json.loads((renamed / "model.json").read_text())
    document["version"] = registry.list()[0].version
    (renamed / "model.json").write_text(json.dumps(document))
    with pytest.raises(ArtifactMismatch, match="already registered"):
        register(registry, renamed, 0.3)


def test_plans_are_pure_and_ordered():
    t = [datetime(2024, 1, day, tzinfo=UTC) for day in (1, 2, 3)]
    states = [StageState("a", ARCHIVED, t[0]), StageState("b", CHAMPION, t[1]), StageState("c", CHALLENGER)]
    promotion = plan_promotion(states, "c")
    assert [(s.version, s.from_stage, s.to_stage) for s in promotion] == [
        ("c", CHALLENGER, CHAMPION),
        ("b", CHAMPION, ARCHIVED),
    ]
    rollback = plan_rollback(states)
    assert [(s.version, s.to_stage, s.kind) for s in rollback] == [
        ("a", CHAMPION, "promoted"),
        ("b", ARCHIVED, "rolled_back"),
    ]
    # After a crash between the two writes, both are champions; the newer one counts.
    crashed = [StageState("a", CHAMPION, t[0]), StageState("b", CHAMPION, t[1])]
    assert [(s.version, s.to_stage) for s in plan_promotion(crashed, "b")] == [("a", ARCHIVED)]
    with pytest.raises(NoPreviousChampion):
        plan_rollback([StageState("a", ARCHIVED, t[0], rolled_back=True), StageState("b", CHAMPION, t[1])])
    with pytest.raises(UnknownVersion):
        plan_promotion(states, "z")
