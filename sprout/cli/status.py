"""``sprout status``: one screen on where the platform stands.

The last crawl and the table counts (DuckDB), the champion and its metrics (model store), the
last gate decision (model history), the last model health check, and the next scheduled flow runs, read from the Prefect API
through Prefect's client when ``PREFECT_API_URL`` points at a server.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def upcoming_runs(api_url: str | None, limit: int = 5, timeout_s: float = 5.0) -> list[dict[str, Any]] | str:
    """Scheduled flow runs soonest first (through Prefect's client), or a line saying why there
    are none to show."""
    if not api_url:
        return "PREFECT_API_URL is not set: no server to ask for schedules"
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    scheduled = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED])))
    try:
        with SyncPrefectClient(api_url, httpx_settings={"timeout": timeout_s}) as client:  # the URL given, nothing cached
            runs = client.read_flow_runs(flow_run_filter=scheduled, sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=limit)
            names = {d: client.read_deployment(d).name for d in {run.deployment_id for run in runs if run.deployment_id}}
    except Exception as error:  # unreachable, refused, an older server: the rest of the status still shows
        return f"Prefect API at {api_url} did not answer: {error.__class__.__name__}"
    return [
        {"deployment": names.get(run.deployment_id, run.name), "expected_start": str(run.expected_start_time)}
        for run in runs
    ]


def gather(settings, registry) -> dict[str, Any]:
    """Everything `sprout status` shows, as plain data."""
    from sprout.monitoring.report import headline
    from sprout.store import Store

    status: dict[str, Any] = {"at": datetime.now(UTC).isoformat(), "home": str(settings.home)}
    if settings.db_path.exists():
        with Store.open(settings.db_path, read_only=True, wait_s=10.0) as store:
            status["store"] = store.counts()
            last = store.last_crawl_run()
            gates = [e for e in store.model_events(limit=50) if e.kind == "gate"]
            checks = store.health_checks(limit=1)
        status["last_crawl"] = None if last is None else {
            "run_id": last.run_id, "status": last.status, "started_at": str(last.started_at),
            "finished_at": str(last.finished_at), "figures": {k: v for k, v in last.stats.items() if v},
        }
        status["last_gate"] = None if not gates else {
            "version": gates[0].model_version, "at": gates[0].at.isoformat(),
            "promote": gates[0].details.get("promote"), "reasons": gates[0].details.get("reasons"),
        }
        status["last_health_check"] = None if not checks else {
            "version": checks[0].model_version, "at": checks[0].checked_at.isoformat(),
            "degraded": checks[0].degraded, "reasons": checks[0].figures.get("reasons", []),
            "figures": headline(checks[0].figures),
        }
    else:
        status["store"] = f"no database at {settings.db_path} yet"
    champion = registry.champion()
    status["champion"] = None if champion is None else {
        "version": champion.version, "promoted_at": champion.labels.get("promoted_at"),
        "dataset": champion.metadata.get("dataset_sha256"), "metrics": champion.metadata.get("metrics", {}),
    }
    status["scheduled"] = upcoming_runs(os.environ.get("PREFECT_API_URL"))
    return status


def _show(status: dict[str, Any]) -> None:
    table = Table(title=f"sprout status ({status['home']})", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("state")
    store = status["store"]
    table.add_row("store", store if isinstance(store, str) else ", ".join(
        f"{k} {v:,}" for k, v in store.items() if isinstance(v, int)))
    crawl = status.get("last_crawl")
    table.add_row("last crawl", "none" if not crawl else
                  f"{crawl['status']} at {crawl['finished_at']}: " + ", ".join(f"{k} {v}" for k, v in crawl["figures"].items()))
    champion = status["champion"]
    table.add_row("champion", "none" if not champion else
                  f"{champion['version']} (promoted {champion['promoted_at']}): " + ", ".join(
                      f"{k} {v:.4f}" for k, v in champion["metrics"].items() if k in ("ndcg@100", "recall@20", "rating_mae")))
    gate = status.get("last_gate")
    table.add_row("last gate", "none" if not gate else
                  f"{gate['version']}: {'promote' if gate['promote'] else 'reject'} — {'; '.join(gate['reasons'] or [])}")
    check = status.get("last_health_check")
    table.add_row("last health check", "none" if not check else
                  f"{check['version']} at {check['at']}: {'degraded' if check['degraded'] else 'healthy'} — "
                  + "; ".join(check["reasons"]))
    scheduled = status["scheduled"]
    table.add_row("scheduled next", scheduled if isinstance(scheduled, str) else "\n".join(
        f"{run['deployment']} at {run['expected_start']}" for run in scheduled) or "nothing scheduled")
    console.print(table)


def status(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Last crawl, database counts, champion and its metrics, last gate decision and health check, what runs next."""
    from bentos.registry import open_registry

    from .common import load_settings

    settings = load_settings()
    found = gather(settings, open_registry(settings))
    if as_json:
        print(json.dumps(found, default=str))
    else:
        _show(found)
