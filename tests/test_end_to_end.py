"""The whole loop against real components: simulator → crawl → snapshot → training → evaluation →
gate → promotion → `sprout serve` → a recommendation over HTTP; then the simulator moves on, an
incremental crawl fetches the changes, its event triggers retraining on a served deployment, and
the new model's gate decision is recorded."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from bentos.local_server import LocalServer
from prefect_api import PrefectServer, drain_prefect_workers
from sprout.malsim.synthetic_population import synthetic_population
from sprout.malsim.server import SimulatorServer
from sprout.store import Store, StoreError


def gate_events(db_path) -> list:
    """Gate events, newest first; an empty answer while another process holds the file."""
    try:
        with Store.open(db_path, read_only=True) as store:
            return [e for e in store.model_events() if e.kind == "gate"]
    except StoreError:
        return []


@pytest.fixture
def platform(tmp_path, monkeypatch):
    population = synthetic_population(400, seed=5, n_anime=300)
    with SimulatorServer(population) as simulator, PrefectServer(tmp_path / "prefect") as prefect:
        env = {
            "SPROUT_HOME": str(tmp_path / "home"), "SPROUT_MODEL_STORE": str(tmp_path / "model-store"),
            "SPROUT_MAL_API_URL": simulator.api_url, "SPROUT_MAL_WEB_URL": simulator.url,
            "SPROUT_MAL_CLIENT_ID": "e2e-client", "SPROUT_MAL_REQUESTS_PER_SECOND": "500",
            "SPROUT_MAL_MAX_IN_FLIGHT": "8", "WANDB_MODE": "offline", "BENTOML_DO_NOT_TRACK": "True",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        drain_prefect_workers()  # services an earlier test bound to the session's harness
        try:
            yield population, simulator, prefect, tmp_path
        finally:
            drain_prefect_workers()


@pytest.mark.timeout(900)
def test_the_whole_loop(platform):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.crawl import CrawlParameters, crawl_flow
    from flows.pipeline import PipelineParameters, pipeline_flow
    from flows.promote import EvaluatePromoteParameters
    from flows.retrain import RetrainParameters
    from sprout.evaluation.gate import GateRules

    population, simulator, prefect, tmp_path = platform
    home, store_dir = tmp_path / "home", tmp_path / "model-store"
    crawl_params = CrawlParameters(usernames=population.usernames(), discover_online=False, shared_rate_limit=False)
    # A mechanics test: a 300-step tiny model on 20 test users is not held to quality bars.
    lenient_latency = EvaluatePromoteParameters(rules=GateRules(max_forward_latency_ms=10_000, ease_tolerance=1.0))
    with temporary_settings({PREFECT_API_URL: prefect.api_url}):
        outcome = asyncio.run(pipeline_flow(PipelineParameters(
            crawl=crawl_params, retrain=RetrainParameters(config="tiny"), promotion=lenient_latency,
        )))
    assert outcome["crawl"]["users_ok"] > 300
    first = outcome["retrain"]["model_version"]
    assert outcome["promotion"]["promoted"], outcome["promotion"]["reasons"]

    username = next(u for u in population.usernames() if not population.is_private(u) and len(population.truth(u)) >= 20)
    profile = [{"anime_id": e["anime_id"], "score": e["score"], "status": e["status"]} for e in population.truth(username)]
    with LocalServer(store_dir, tmp_path / "serve.log", extra_env={"SPROUT_SERVE_POLL_S": "1"}) as server:
        answer = httpx.post(f"{server.url}/recommend", json={"profile": profile, "top_k": 10}, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"]["version"] == first and len(body["recommendations"]) == 10
        assert not {r["anime_id"] for r in body["recommendations"]} & {e["anime_id"] for e in profile}

        # The event-driven half: a runner serves retrain (on crawl events) and evaluate-promote.
        runner = subprocess.Popen(
            [sys.executable, "-m", "flows.serve_local", "--config", "tiny", "--min-changed-profiles", "1"],
            env={**os.environ, "PREFECT_API_URL": prefect.api_url, "PREFECT_HOME": str(prefect.home)},
            stdout=(tmp_path / "runner.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            time.sleep(8)  # the runner registers its deployments and triggers
            changes = population.advance(30)
            assert changes["added"] + changes["changed"] > 0
            with temporary_settings({PREFECT_API_URL: prefect.api_url}):
                figures = asyncio.run(crawl_flow(crawl_params))  # the seed list again: every user, due or not
            assert figures["profiles_changed"] > 0 and figures["entries_added"] + figures["entries_changed"] > 0

            deadline = time.monotonic() + 420
            decisions = []
            while time.monotonic() < deadline and len(decisions) < 2:
                assert runner.poll() is None, (tmp_path / "runner.log").read_text()[-3000:]
                time.sleep(3)
                decisions = gate_events(home / "sprout.duckdb")
            assert len(decisions) >= 2, (tmp_path / "runner.log").read_text()[-4000:]
            newest = decisions[0]
            assert newest.model_version != first and isinstance(newest.details["promote"], bool)
            assert newest.details["champion_version"] == first and newest.details["champion_status"].startswith("scored")
            health = httpx.get(f"{server.url}/readyz", timeout=10)
            assert health.status_code == 200
        finally:
            os.killpg(runner.pid, signal.SIGTERM)
            try:
                runner.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)
