"""`sprout evaluate` and `sprout models` against a real BentoML store and DuckDB history."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from promotion_helpers import make_trained_home, private_home
from sprout.cli import app
from sprout.store import Store

LATENCY = ["--max-latency-ms", "10000"]  # this shared CI machine's latency is not under test here


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return make_trained_home(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def home(trained, tmp_path, monkeypatch):
    return private_home(trained, tmp_path, monkeypatch)


def run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout


def test_evaluate_prints_metrics_baselines_and_decision(home):
    result = json.loads(run("evaluate", home.trained[0], "--json", *LATENCY))
    assert result["challenger_version"] == home.trained[0]
    assert set(result["baselines"]) == {"popularity", "ease", "user_mean", "item_mean", "bias", "item_knn"}
    rating_baselines = [b["rating_mae"] for b in result["baselines"].values() if b["rating_mae"] is not None]
    assert len(rating_baselines) == 4 and result["challenger"]["rating_mae"] <= min(rating_baselines)
    for name in ("recall@20", "recall@50", "ndcg@100", "rating_mae", "rating_rmse", "coverage@20"):
        assert isinstance(result["challenger"][name], float)
    assert result["champion"] is None and result["decision"]["promote"] is True
    assert result["challenger"]["ndcg@100"] > result["baselines"]["popularity"]["ndcg@100"]

    random = json.loads(run("evaluate", home.random, "--json", *LATENCY))
    assert random["decision"]["promote"] is False
    assert any("popularity" in reason for reason in random["decision"]["reasons"])


def test_promote_list_rollback_and_history(home):
    refused = CliRunner().invoke(app, ["models", "promote", home.random, *LATENCY])
    assert refused.exit_code == 1 and "gate refused" in refused.output

    first, second = home.trained
    assert json.loads(run("models", "promote", first, "--json", *LATENCY))["champion"] == first
    listed = {m["version"]: m for m in json.loads(run("models", "list", "--json"))}
    assert listed[first]["stage"] == "champion" and listed[first]["metrics"]["ndcg@100"] > 0

    # The second model is compared with the champion; a forced promotion is recorded as such.
    run("models", "promote", second, "--force", "--reason", "operator override", "--json")
    stages = {m["version"]: m["stage"] for m in json.loads(run("models", "list", "--json"))}
    assert stages == {first: "archived", second: "champion"}

    assert json.loads(run("models", "rollback", "--from", second, "--json"))["champion"] == first
    stages = {m["version"]: m["stage"] for m in json.loads(run("models", "list", "--json"))}
    assert stages == {first: "champion", second: "archived"}
    repeated = json.loads(run("models", "rollback", "--from", second, "--json"))  # an operator's retry
    assert repeated == {"champion": first, "steps": []}
    refused_again = CliRunner().invoke(app, ["models", "rollback"])
    assert refused_again.exit_code == 1 and "no earlier champion" in refused_again.output

    events = json.loads(run("models", "history", "--json", "--limit", "50"))
    kinds = [(e["kind"], e["version"]) for e in reversed(events)]
    assert kinds[0] == ("gate", home.random)
    assert ("promoted", first) in kinds and ("rolled_back", second) in kinds
    assert any(e["reason"].startswith("operator override (gate skipped") for e in events if e["kind"] == "promoted")
    with Store.open(home.home / "sprout.duckdb", read_only=True) as store:
        gate = next(e for e in store.model_events() if e.kind == "gate" and e.model_version == first)
    assert gate.details["promote"] is True and gate.details["challenger"]["ndcg@100"] > 0
    assert {c["name"] for c in gate.details["checks"]} >= {"finite_outputs", "ndcg@100_over_popularity"}


def test_unknown_versions_get_a_clear_error(home):
    result = CliRunner().invoke(app, ["evaluate", "no-such-version"])
    assert result.exit_code == 1 and "no-such-version" in result.output
    result = CliRunner().invoke(app, ["models", "promote", "no-such-version", "--force"])
    assert result.exit_code == 1 and "no-such-version" in result.output


def test_status_summarises_store_champion_gate_and_schedules(home, monkeypatch):
    first = home.trained[0]
    run("models", "promote", first, "--json", *LATENCY)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    status = json.loads(run("status", "--json"))
    assert status["store"]["users"] > 0 and status["store"]["list_entries"] > 0
    assert status["champion"]["version"] == first and status["champion"]["metrics"]["ndcg@100"] > 0
    assert status["last_gate"]["version"] == first and status["last_gate"]["promote"] is True
    assert "PREFECT_API_URL is not set" in status["scheduled"]
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing listens on port 9
    assert "did not answer" in json.loads(run("status", "--json"))["scheduled"]
    assert first in run("status")
