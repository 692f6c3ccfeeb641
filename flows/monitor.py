"""Monitor flow: is the champion still good on what people watched since its snapshot?

Runs after each crawl (``sprout.crawl.completed``) and daily. One check (`sprout.monitoring`):
the champion's fresh-data NDCG and recall beside popularity and EASE on the same users and
beside its promotion figures, drift of the lists it now sees, and the live service's figures
when ``SPROUT_MONITOR_SERVICE_URL`` is set. The check lands in DuckDB, in the ``model-health``
table artifact (with the champion's earlier checks, so the trend shows) and in a W&B ``monitor``
run; a degraded champion announces ``sprout.model.degraded``, which starts ``retrain``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from pydantic import BaseModel, Field

from bentos.registry import open_registry
from flows.limits import duckdb_access
from sprout.config import Settings
from sprout.monitoring.health import Champion, HealthCheck, check_and_record, should_announce
from sprout.monitoring.report import headline, trend_rows
from sprout.monitoring.tracking import log_health_run

MODEL_DEGRADED = "sprout.model.degraded"


class MonitorParameters(BaseModel):
    """What the monitor deployment's form asks for."""

    service_url: str | None = Field(None, description="Read this service's /metrics; default SPROUT_MONITOR_SERVICE_URL.")
    track: bool = Field(True, description="Log the trend to a W&B monitor run (offline without WANDB_API_KEY).")
    announce: bool = Field(True, description="Emit sprout.model.degraded when the champion is degraded.")


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def check_task(settings: Settings, champion: Champion) -> tuple[HealthCheck, list]:
    return check_and_record(settings, champion, access=duckdb_access)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def publish_task(settings: Settings, check: HealthCheck, previous: list, track: bool) -> str | None:
    """The trend as the ``model-health`` artifact, and as a W&B run."""
    checks = [check.row(), *previous]
    create_table_artifact(
        key="model-health", table=trend_rows(checks),
        description=f"Model {check.model_version}: {'DEGRADED' if check.degraded else 'healthy'} — "
        + "; ".join(check.reasons),
    )
    return log_health_run(checks, settings.workspace.wandb) if track else None


@flow(name="monitor", log_prints=True)
def monitor_flow(params: MonitorParameters = MonitorParameters()) -> dict[str, Any]:
    """Check the champion on fresh data, publish the trend, announce a degraded champion."""
    settings = Settings()
    if params.service_url:
        settings = settings.model_copy(update={"monitor_service_url": params.service_url.rstrip("/")})
    record = open_registry(settings).champion()
    if record is None:
        print("no champion to check")
        return {"skipped": True}
    champion = Champion(record.version, record.path, record.metadata.get("metrics", {}))
    check, previous = check_task(settings, champion)
    run_id = publish_task(settings, check, previous, params.track)
    announced = params.announce and should_announce(check, previous)
    figures = headline(check.figures)
    if announced:
        emit_event(
            event=MODEL_DEGRADED,
            resource={"prefect.resource.id": f"sprout.model.{check.model_version}", "prefect.resource.name": "sprout model"},
            payload={"model_version": check.model_version, "reasons": check.reasons,
                     **{k: v for k, v in figures.items() if k.endswith("ndcg@100")}},
        )
    print(f"model {check.model_version}: {'degraded' if check.degraded else 'healthy'} — {'; '.join(check.reasons)}")
    return {"skipped": False, "model_version": check.model_version, "degraded": check.degraded,
            "announced": announced, "reasons": check.reasons, "figures": figures, "wandb_run_id": run_id,
            "check": check.row()}


if __name__ == "__main__":
    monitor_flow()
