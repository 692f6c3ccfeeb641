"""The evaluate-promote flow under the Prefect test server: artifacts, W&B, DuckDB history, and a
transaction that undoes a promotion whose verification fails."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from promotion_helpers import make_trained_home, private_home
from sprout.evaluation.gate import GateRules
from sprout.store import Store
from wandb_reader import read_offline_run

RULES = GateRules(max_forward_latency_ms=10_000)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return make_trained_home(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def home(trained, tmp_path, monkeypatch):
    return private_home(trained, tmp_path, monkeypatch)


def registry(home):
    from bentos.registry import ModelRegistry

    return ModelRegistry(home.home.parent / "model-store")


def artifacts() -> dict[str, object]:
    from prefect import get_client

    async def read():
        async with get_client() as client:
            return {a.key: a for a in await client.read_artifacts(limit=100)}

    return asyncio.run(read())


def newest_run_summary(home, run_id: str) -> dict:
    runs = sorted((home.home / "wandb" / "wandb").glob(f"offline-run-*-{run_id}"))
    return read_offline_run(runs[-1])["summary"]


def test_flow_promotes_a_passing_model_and_publishes_the_comparison(prefect_server, home):
    from flows.promote import EvaluatePromoteParameters, evaluate_promote_flow

    version = home.trained[0]
    outcome = evaluate_promote_flow(EvaluatePromoteParameters(version=version, rules=RULES))
    assert outcome["promoted"] and registry(home).champion().version == version

    found = artifacts()
    table = found["evaluation"]
    assert "popularity" in str(table.data) and "ease" in str(table.data) and version in str(table.data)
    assert "promote" in str(found["gate-decision"].data)
    summary = newest_run_summary(home, _run_id(home, version))
    assert summary["eval/decision"] == "promote" and summary["eval/challenger/ndcg@100"] > 0

    # A random-weight model is evaluated against the champion, refused, and the refusal recorded.
    refused = evaluate_promote_flow(EvaluatePromoteParameters(version=home.random, rules=RULES))
    assert not refused["promote"] and not refused["promoted"]
    assert refused["champion_version"] == version and registry(home).champion().version == version
    with Store.open(home.home / "sprout.duckdb", read_only=True) as store:
        gates = [e for e in store.model_events() if e.kind == "gate"]
    assert [g.model_version for g in gates] == [home.random, version]
    assert gates[0].details["champion_status"] == "scored"


def _run_id(home, version: str) -> str:
    import json

    return json.loads((home.home / "models" / version / "model.json").read_text())["wandb_run_id"]


def test_a_damaged_copy_is_never_promoted(prefect_server, home):
    from flows.promote import EvaluatePromoteParameters, evaluate_promote_flow

    first, second = home.trained
    evaluate_promote_flow(EvaluatePromoteParameters(version=first, rules=RULES))
    # The second model's copy in the store is damaged after registration: the check of what a
    # server would load fails before any stage changes, so no server ever sees it as champion.
    from sprout.registry.promotion import register_version

    register_version(second, home=home.home, registry=registry(home), metrics={})
    weights = Path(registry(home).artifact_path(second)) / "weights.npz"
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)

    lenient = RULES.model_copy(update={"ndcg_margin": -1.0, "max_mae_regression": 100.0})
    with pytest.raises(Exception, match="cannot be loaded"):
        evaluate_promote_flow(EvaluatePromoteParameters(version=second, rules=lenient))
    assert registry(home).champion().version == first
    assert registry(home).get(second).stage == "challenger"
    with Store.open(home.home / "sprout.duckdb", read_only=True) as store:
        kinds = [(e.kind, e.model_version) for e in store.model_events()]
    assert ("gate", second) in kinds and ("promoted", second) not in kinds
