"""prefect.yaml and the work-pool templates against a real Prefect server.

One module-scoped server (`prefect server start` on 127.0.0.1, its own SQLite under a temporary
PREFECT_HOME) gets both work pools from the templates in infra/work-pools/, then
`prefect --no-prompt deploy --all` runs from the repository root as an operator runs it. The tests
read back what the server holds and fire the deployment triggers with real events; no worker
is needed to see the flow runs they create.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.exceptions import PrefectHTTPStatusError

REPO = Path(__file__).resolve().parents[1]
PREFECT = [sys.executable, "-m", "prefect"]
DEPLOYMENTS = {
    "crawl", "crawl-assignment", "ingest", "refresh-anime", "retrain", "retrain-cpu", "evaluate-promote", "rollback",
    "pipeline", "monitor",
}
CRAWL_PARAMS = {
    "discover_online": True, "max_users": 500, "full_refresh": False, "refresh_anime": True, "shared_rate_limit": True,
}
INGEST_PARAMS = {
    "assign_users": 500, "assignments": 1, "discover_online": True, "full_refresh": False, "claim_hours": 6,
    "refresh_anime": True, "shared_rate_limit": True,
}
ROCM_DEVICES = ["/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _prefect_env(home: Path, api_url: str) -> dict[str, str]:
    """This process's environment without any Prefect or checkout settings, pointed at our server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "SPROUT_REPO"}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        # Only the services under test: no scheduler filling the database with scheduled runs.
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",
        PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED="false",
        PREFECT_SERVER_SERVICES_FOREMAN_ENABLED="false",
        PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED="false",
        PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED="false",
    )
    return env


def _prefect(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    done = subprocess.run([*PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)


class Server:
    """Handles on the running server: its URL and a client."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url
        self.client = SyncPrefectClient(api_url)

    def deployment(self, name: str):
        return self.client.read_deployment_by_name(f"{_flow_of(name)}/{name}")

    def automations(self, name: str) -> list:
        deployment = self.deployment(name)
        return self.client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")

    def runs_of(self, name: str) -> list:
        deployment = self.deployment(name)
        return self.client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        )

    def emit(self, event: str, resource_id: str, payload: dict[str, Any]) -> None:
        body = [{
            "id": str(uuid.uuid4()),
            "occurred": datetime.now(timezone.utc).isoformat(),
            "event": event,
            "resource": {"prefect.resource.id": resource_id},
            "payload": payload,
            "related": [],
        }]
        response = httpx.post(f"{self.api_url}/events", json=body, timeout=10)
        assert response.status_code == 204, response.text


def _flow_of(deployment: str) -> str:
    """The flow each deployment runs (its name in `flow/deployment`)."""
    return {"retrain-cpu": "retrain", "crawl-assignment": "crawl"}.get(deployment, deployment)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = _prefect_env(home, api_url)
    log = (home / "server.log").open("w")
    process = subprocess.Popen(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        def healthy() -> bool:
            assert process.poll() is None, f"server exited:\n{(home / 'server.log').read_text()}"
            try:
                return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_for(healthy, 150, "the Prefect server's /api/health")
        handle = Server(api_url)
        with handle.client:
            # What `prefect work-pool create NAME --type T --base-job-template FILE` sends (the
            # docker pool needs no prefect-docker for this), without two more CLI start-ups.
            for name, kind in (("sprout-cpu", "process"), ("sprout-rocm", "docker")):
                template = json.loads((REPO / f"infra/work-pools/{name}.json").read_text())
                handle.client.create_work_pool(WorkPoolCreate(name=name, type=kind, base_job_template=template))
            _prefect(env, "--no-prompt", "deploy", "--all", timeout=240)
            yield handle
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_prefect_yaml_builds_nothing_and_uses_the_two_pools():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert spec["build"] is None and spec["push"] is None
    assert spec["pull"] == [
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SPROUT_REPO }}"}}
    ]
    assert {d["name"] for d in spec["deployments"]} == DEPLOYMENTS
    assert {d["work_pool"]["name"] for d in spec["deployments"]} == {"sprout-cpu", "sprout-rocm"}
    text = (REPO / "prefect.yaml").read_text()
    for secret in ("SPROUT_MAL_CLIENT_ID:", "WANDB_API_KEY:"):
        assert secret not in text  # named in comments only, never given a value
    rocm = json.loads((REPO / "infra/work-pools/sprout-rocm.json").read_text())
    kwargs = rocm["variables"]["properties"]["container_create_kwargs"]["default"]
    assert kwargs["devices"] == ROCM_DEVICES and set(kwargs["group_add"]) == {"video", "render"}


def test_every_deployment_is_on_the_server(server: Server):
    deployments = {d.name: d for d in server.client.read_deployments()}
    assert set(deployments) == DEPLOYMENTS
    pools = {name: d.work_pool_name for name, d in deployments.items()}
    assert pools == {
        "crawl": "sprout-cpu", "crawl-assignment": "sprout-cpu", "ingest": "sprout-cpu", "refresh-anime": "sprout-cpu",
        "retrain": "sprout-rocm",
        "retrain-cpu": "sprout-cpu", "evaluate-promote": "sprout-cpu", "rollback": "sprout-cpu", "pipeline": "sprout-cpu",
        "monitor": "sprout-cpu",
    }
    assert deployments["crawl"].work_queue_name == deployments["crawl-assignment"].work_queue_name == "crawl"
    # What writes DuckDB from MAL or the spool, or reads it whole, runs on the store's host, off the crawl queue.
    assert deployments["ingest"].work_queue_name == deployments["refresh-anime"].work_queue_name == "ingest"
    assert deployments["monitor"].work_queue_name == "ingest"
    # Nothing built or pushed; the one pull step is resolved on the worker, at run time.
    for deployment in deployments.values():
        assert deployment.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $SPROUT_REPO }}"}}
        ]
        assert deployment.global_concurrency_limit is not None
    limits = {name: d.global_concurrency_limit.limit for name, d in deployments.items()}
    assert limits == {**{name: 1 for name in DEPLOYMENTS}, "crawl-assignment": 8}  # crawls of assignments side by side
    strategies = {name: d.concurrency_options.collision_strategy.value for name, d in deployments.items()}
    assert strategies["crawl"] == strategies["ingest"] == "CANCEL_NEW" and strategies["evaluate-promote"] == "ENQUEUE"
    assert strategies["crawl-assignment"] == "ENQUEUE"
    for manual in ("rollback", "pipeline", "evaluate-promote", "crawl-assignment"):
        assert deployments[manual].schedules == []


def test_schedules(server: Server):
    crawl = server.deployment("crawl").schedules
    assert len(crawl) == 1 and crawl[0].active
    assert crawl[0].schedule.interval == timedelta(seconds=1800)

    (ingest,) = server.deployment("ingest").schedules
    assert ingest.active and ingest.schedule.interval == timedelta(seconds=600)

    (refresh,) = server.deployment("refresh-anime").schedules
    assert refresh.schedule.cron == "30 4 * * *" and refresh.schedule.timezone == "America/Los_Angeles"

    (weekly,) = server.deployment("retrain").schedules
    assert weekly.schedule.cron == "0 3 * * 1" and weekly.schedule.timezone == "America/Los_Angeles"
    assert weekly.active
    assert weekly.parameters["params"]["min_changed_profiles"] == 1
    assert weekly.parameters["params"]["config"] == "default"

    (cpu_weekly,) = server.deployment("retrain-cpu").schedules
    assert not cpu_weekly.active  # switched on only where no GPU worker runs

    (daily_health,) = server.deployment("monitor").schedules
    assert daily_health.active and daily_health.schedule.cron == "0 6 * * *"


def test_rocm_job_variables_pass_the_gpu(server: Server):
    retrain = server.deployment("retrain")
    kwargs = retrain.job_variables["container_create_kwargs"]
    assert kwargs["devices"] == ROCM_DEVICES
    assert set(kwargs["group_add"]) == {"video", "render"}
    assert retrain.job_variables["image"] == "sprout-train:rocm"
    pool = server.client.read_work_pool("sprout-rocm")
    assert pool.type == "docker"
    assert pool.base_job_template["variables"]["properties"]["env"]["default"]["SPROUT_REPO"] == "/opt/sprout"
    cpu_pool = server.client.read_work_pool("sprout-cpu")
    assert cpu_pool.type == "process"
    assert cpu_pool.base_job_template["variables"]["properties"]["env"]["default"]["SPROUT_MAL_REQUESTS_PER_SECOND"] == "1.0"


def test_parameter_forms_are_typed(server: Server):
    def fields(name: str, model: str) -> dict[str, Any]:
        schema = server.deployment(name).parameter_openapi_schema
        assert schema["properties"]["params"]["$ref"].endswith(f"/{model}")
        return schema["definitions"][model]["properties"]

    crawl = fields("crawl", "CrawlParameters")
    assert crawl["max_users"]["type"] == "integer" and crawl["max_users"]["minimum"] == 1
    assert {"usernames", "discover_online", "full_refresh", "shared_rate_limit"} <= set(crawl)
    assert "min_changed_profiles" in fields("retrain", "RetrainParameters")
    assert {"version", "rules", "promote"} <= set(fields("evaluate-promote", "EvaluatePromoteParameters"))
    assert "reason" in fields("rollback", "RollbackParameters")
    ingest = fields("ingest", "IngestParameters")
    assert ingest["assignments"]["minimum"] == 1 and {"assign_users", "claim_hours", "discover_online"} <= set(ingest)
    assert server.deployment("ingest").parameters == {"params": INGEST_PARAMS}
    assert {"crawl", "retrain", "promotion"} <= set(fields("pipeline", "PipelineParameters"))
    assert server.deployment("crawl").parameters == server.deployment("crawl-assignment").parameters == {
        "params": CRAWL_PARAMS
    }
    assert "assignment" in crawl


def test_the_server_validates_run_parameters(server: Server):
    crawl = server.deployment("crawl")
    with pytest.raises(PrefectHTTPStatusError) as refused:
        server.client.create_flow_run_from_deployment(crawl.id, parameters={"params": {"max_users": 0}})
    assert refused.value.response.status_code in (409, 422)
    run = server.client.create_flow_run_from_deployment(crawl.id, parameters={"params": {"max_users": 25}})
    assert run.parameters["params"]["max_users"] == 25
    assert run.state is not None and run.state.is_scheduled()


def test_triggers_are_linked_automations(server: Server):
    retrain, degraded = sorted(server.automations("retrain"), key=lambda a: a.name, reverse=True)
    assert retrain.enabled and retrain.name == "retrain: enough changed profiles"
    assert retrain.trigger.expect == {"sprout.crawl.completed"}
    assert retrain.trigger.match.model_dump() == {"prefect.resource.id": "sprout.crawl.*"}
    assert retrain.actions[0].parameters["params"]["min_changed_profiles"] == 50
    assert degraded.enabled and degraded.name == "retrain: champion degraded"
    assert degraded.trigger.expect == {"sprout.model.degraded"}
    assert degraded.trigger.match.model_dump() == {"prefect.resource.id": "sprout.model.*"}
    assert degraded.actions[0].parameters["params"]["min_changed_profiles"] == 0  # trains now

    cpu_triggers = sorted(server.automations("retrain-cpu"), key=lambda a: a.name, reverse=True)
    assert [a.name for a in cpu_triggers] == ["retrain-cpu: enough changed profiles", "retrain-cpu: champion degraded"]
    assert not any(a.enabled for a in cpu_triggers)
    for cpu, gpu in zip(cpu_triggers, (retrain, degraded)):
        assert cpu.trigger.expect == gpu.trigger.expect and cpu.actions[0].parameters == gpu.actions[0].parameters

    (monitor,) = server.automations("monitor")
    assert monitor.enabled and monitor.trigger.expect == {"sprout.crawl.completed"}
    assert monitor.trigger.match.model_dump() == {"prefect.resource.id": "sprout.crawl.*"}

    (ingest,) = server.automations("ingest")
    assert ingest.enabled and ingest.name == "ingest: lists spooled"
    assert ingest.trigger.expect == {"sprout.crawl.spooled"}
    assert ingest.trigger.match.model_dump() == {"prefect.resource.id": "sprout.crawl.*"}

    (assigned,) = server.automations("crawl-assignment")
    assert assigned.enabled and assigned.trigger.expect == {"sprout.crawl.assigned"}
    assert assigned.trigger.match.model_dump() == {"prefect.resource.id": "sprout.assignment.*"}

    (promote,) = server.automations("evaluate-promote")
    assert promote.enabled and promote.trigger.expect == {"sprout.model.trained"}
    assert promote.trigger.match.model_dump() == {"prefect.resource.id": "sprout.model.*"}
    for manual in ("crawl", "rollback", "pipeline"):
        assert server.automations(manual) == []


def test_a_completed_crawl_starts_a_retrain_run(server: Server):
    # An event from elsewhere first: it must not match.
    server.emit("sprout.crawl.completed", "elsewhere.crawl.1", {"users_crawled": 3})
    server.emit("sprout.crawl.completed", f"sprout.crawl.{uuid.uuid4()}", {"users_crawled": 80})
    (run,) = _wait_for(lambda: server.runs_of("retrain"), 30, "a flow run of the retrain deployment")
    assert run.parameters == {"params": {"config": "default", "track": True, "min_changed_profiles": 50}}
    (check,) = _wait_for(lambda: server.runs_of("monitor"), 30, "a flow run of the monitor deployment")
    assert check.parameters == {"params": {"track": True, "announce": True}}
    assert server.runs_of("retrain-cpu") == []  # its trigger is off


def test_a_degraded_champion_starts_a_retrain_run_that_trains_now(server: Server):
    before = {run.id for run in server.runs_of("retrain")}
    version = "20260101T000000-0badc0de"
    server.emit("sprout.model.degraded", "elsewhere.model.x", {"model_version": "x"})
    server.emit("sprout.model.degraded", f"sprout.model.{version}", {"model_version": version, "reasons": ["below EASE"]})
    (run,) = _wait_for(lambda: [r for r in server.runs_of("retrain") if r.id not in before], 30,
                       "a retrain run started by sprout.model.degraded")
    assert run.parameters == {"params": {"config": "default", "track": True, "min_changed_profiles": 0}}
    assert server.runs_of("retrain-cpu") == []  # its trigger is off


def test_spooled_lists_start_an_ingest_run(server: Server):
    retrains = len(server.runs_of("retrain"))
    server.emit("sprout.crawl.spooled", "elsewhere.crawl.1", {"batches_spooled": 2})
    server.emit("sprout.crawl.spooled", f"sprout.crawl.{uuid.uuid4()}", {"batches_spooled": 4})
    (run,) = _wait_for(lambda: server.runs_of("ingest"), 30, "a flow run of the ingest deployment")
    assert run.parameters == {"params": INGEST_PARAMS}
    assert len(server.runs_of("retrain")) == retrains  # spooled lists are not stored yet: nothing to retrain on


def test_each_handed_out_assignment_starts_a_crawl_of_it(server: Server):
    names = ["20260101T000000000000Z-plan", "20260101T000000000001Z-plan"]
    server.emit("sprout.crawl.assigned", "elsewhere.assignment.x", {"assignment": "x", "users": 1})
    for name in names:
        server.emit("sprout.crawl.assigned", f"sprout.assignment.{name}", {"assignment": name, "users": 12})
    runs = _wait_for(lambda: runs if len(runs := server.runs_of("crawl-assignment")) == 2 else [],
                     30, "two flow runs of the crawl-assignment deployment")
    assert sorted(run.parameters["params"]["assignment"] for run in runs) == names
    assert all(run.parameters == {"params": {**CRAWL_PARAMS, "assignment": run.parameters["params"]["assignment"]}}
               for run in runs)


def test_a_trained_model_starts_its_evaluation_with_the_version_templated(server: Server):
    version = "20260101T000000-abcdef12"
    server.emit("sprout.model.trained", f"sprout.model.{version}", {"model_version": version, "val/ndcg@100": 0.4})
    (run,) = _wait_for(lambda: server.runs_of("evaluate-promote"), 30, "a flow run of evaluate-promote")
    assert run.parameters == {"params": {"promote": True, "version": version}}
