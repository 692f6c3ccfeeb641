"""``sprout monitor``: check the champion on what people added since its snapshot, and record it."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from sprout.json_values import json_ready

from .common import AsJson, console, fail, load_settings


def _number(value) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _milliseconds(value) -> str:
    return "—" if value is None else f"{value:.1f} ms"


def show_check(check) -> None:
    """A recorded check (`HealthCheckRow`) as tables: fresh-data quality, drift, the service, the verdict."""
    figures = check.figures
    counts = figures["counts"]
    table = Table(title=f"model {check.model_version} on {int(counts['fresh_users'])} users who added shows since "
                        f"{figures['snapshot_date']} ({int(counts['fresh_targets'])} shows)")
    for column in ("scored", "NDCG@100", "Recall@20", "Recall@50"):
        table.add_column(column)
    rows = [(name, metrics) for name, metrics in figures["fresh"].items()]
    rows.append(("model at promotion (test users)", figures["at_promotion"]))
    for name, metrics in rows:
        table.add_row(name, *(_number(metrics.get(k)) for k in ("ndcg@100", "recall@20", "recall@50")))
    console.print(table)
    drift = figures["drift"]
    console.print(
        f"drift: profile sizes PSI {drift['profile_size_psi']:.3f}, ratings PSI {drift['rating_psi']:.3f}; "
        f"{drift['outside_corpus_share']:.1%} of {drift['updated_entries']:,} entries updated since are on shows "
        f"outside the corpus; {int(counts['withdrawn_users'])} of the snapshot's users went private or deleted"
    )
    top = drift["top_outside_corpus"][:5]
    if top:
        console.print("most added outside the corpus: " + ", ".join(f"{s['title']} ({s['entries']})" for s in top))
    service = figures.get("service")
    if service:
        console.print(f"service {service['url']}: " + (service["error"] if "error" in service else (
            f"{service['requests']:.0f} requests {service['window']}"
            + (f" ({service['requests_per_s']:.2f}/s)" if service.get("requests_per_s") is not None else "")
            + f", {service['errors']:.0f} errors, {service['shed']:.0f} shed, p50 {_milliseconds(service['p50_ms'])}, "
            f"p99 {_milliseconds(service['p99_ms'])}")))
    verdict = "[bold red]degraded[/]" if check.degraded else "[green]healthy[/]"
    console.print(f"{verdict}: " + "; ".join(figures.get("reasons", [])))


def monitor(
    as_json: AsJson = False,
    service_url: Annotated[str | None, typer.Option(
        help="Also read this service's /metrics [default: SPROUT_MONITOR_SERVICE_URL]")] = None,
) -> None:
    """Check the champion on what people added since its snapshot (beside popularity and EASE),
    the drift of the lists it now sees and the live service; record the check in the store."""
    from bentos.registry import open_registry
    from sprout.monitoring.health import Champion, HealthCheckError, check_and_record
    from sprout.store import StoreError

    settings = load_settings()
    if service_url:
        settings = settings.model_copy(update={"monitor_service_url": service_url.rstrip("/")})
    if not settings.db_path.exists():
        raise fail(f"no database at {settings.db_path}: crawl or import first")
    champion = open_registry(settings).champion()
    if champion is None:
        raise fail("no champion to check: promote a model first (`sprout models promote VERSION`)")
    try:
        check, _ = check_and_record(settings, Champion(champion.version, champion.path, champion.metadata.get("metrics", {})))
    except (HealthCheckError, StoreError) as error:
        raise fail(str(error)) from None
    row = check.row()
    if as_json:
        print(json.dumps(json_ready({"model_version": row.model_version, "checked_at": row.checked_at.isoformat(),
                                     "check_id": row.check_id, **row.figures}), default=str))
    else:
        show_check(row)
