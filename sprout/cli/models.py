"""``sprout evaluate`` and ``sprout models``: the gate and the registry from the command line.

The registry lives in the BentoML model store, so these commands import it only when they run.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from sprout.evaluation.gate import GateRules
from sprout.json_values import json_ready

from .common import AsJson, console, err_console, fail, load_settings, open_store

DEFAULT_RULES = GateRules()  # the options' defaults: one source for the gate's thresholds

models_app = typer.Typer(help="The model registry: list, promote, roll back.", no_args_is_help=True)


def _settings_and_registry():
    from bentos.registry import open_registry

    settings = load_settings()
    return settings, open_registry(settings)


def _print_comparison(result: dict[str, Any]) -> None:
    from sprout.evaluation.report import comparison_rows, decision_markdown

    rows = comparison_rows(result)
    table = Table(title=f"{result['split']} users of snapshot {result['snapshot_id']}")
    for column in rows[0]:
        table.add_column(column)
    for row in rows:
        table.add_row(*("—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(table)
    console.print(decision_markdown(result), highlight=False)


def _evaluate(version: str, settings, registry, rules) -> dict[str, Any]:
    from sprout.registry.promotion import evaluate_version
    from sprout.evaluation.promotion import IncomparableModel
    from sprout.registry import RegistryError

    try:
        return evaluate_version(version, home=settings.home, registry=registry, rules=rules)
    except (RegistryError, IncomparableModel, FileNotFoundError) as error:
        raise fail(str(error)) from None


def _rules(
    ndcg_margin: float, max_mae_regression: float, max_latency_ms: float, ease_tolerance: float,
    rating_tolerance: float,
):
    return GateRules(
        ndcg_margin=ndcg_margin, max_mae_regression=max_mae_regression, max_forward_latency_ms=max_latency_ms,
        ease_tolerance=ease_tolerance, rating_baseline_tolerance=rating_tolerance,
    )


NdcgMargin = Annotated[float, typer.Option(help="Challenger NDCG@100 must beat the champion's by this.")]
MaeRegression = Annotated[float, typer.Option(help="Largest allowed rating-MAE regression (1–10 scale).")]
LatencyBudget = Annotated[float, typer.Option(help="Forward-pass latency budget in ms.")]
EaseTolerance = Annotated[
    float, typer.Option(help="How far the challenger's NDCG@100 may fall below EASE's on the same test users.")
]
RatingTolerance = Annotated[
    float, typer.Option(help="How far the challenger's rating MAE may exceed the best rating baseline's (1–10 scale).")
]


def evaluate(
    version: Annotated[str, typer.Argument(help="Model version (trained under SPROUT_HOME/models, or registered).")],
    ndcg_margin: NdcgMargin = DEFAULT_RULES.ndcg_margin,
    max_mae_regression: MaeRegression = DEFAULT_RULES.max_mae_regression,
    max_latency_ms: LatencyBudget = DEFAULT_RULES.max_forward_latency_ms,
    ease_tolerance: EaseTolerance = DEFAULT_RULES.ease_tolerance,
    rating_tolerance: RatingTolerance = DEFAULT_RULES.rating_baseline_tolerance,
    as_json: AsJson = False,
) -> None:
    """Score a model, the champion and the baselines on the same test users; print the gate decision."""
    settings, registry = _settings_and_registry()
    result = _evaluate(version, settings, registry, _rules(
        ndcg_margin, max_mae_regression, max_latency_ms, ease_tolerance, rating_tolerance
    ))
    if as_json:
        print(json.dumps(json_ready(result), default=str))
    else:
        _print_comparison(result)


@models_app.command("list")
def list_models(as_json: AsJson = False) -> None:
    """Registered versions with their stage, dataset, W&B run and metrics."""
    _, registry = _settings_and_registry()
    records = [
        {
            "version": r.version, "stage": r.stage, "created_at": r.created_at.isoformat(),
            "promoted_at": r.labels.get("promoted_at"), "dataset": r.metadata.get("dataset_sha256"),
            "wandb_run": r.labels.get("wandb_run") or None, "metrics": r.metadata.get("metrics", {}),
        }
        for r in registry.list()
    ]
    if as_json:
        print(json.dumps(json_ready(records)))
        return
    table = Table(title=f"models in {registry.store_dir}")
    for column in ("version", "stage", "promoted at", "NDCG@100", "rating MAE", "dataset"):
        table.add_column(column)
    for r in records:
        metrics = r["metrics"]
        table.add_row(
            r["version"], r["stage"], r["promoted_at"] or "", f"{metrics.get('ndcg@100', float('nan')):.4f}",
            f"{metrics.get('rating_mae', float('nan')):.4f}", (r["dataset"] or "")[:12],
        )
    console.print(table)


@models_app.command("promote")
def promote(
    version: Annotated[str, typer.Argument(help="Model version to make the champion.")],
    reason: Annotated[str, typer.Option(help="Why, for the history.")] = "manual promotion",
    force: Annotated[bool, typer.Option(help="Skip the gate (the override is recorded).")] = False,
    ndcg_margin: NdcgMargin = DEFAULT_RULES.ndcg_margin,
    max_mae_regression: MaeRegression = DEFAULT_RULES.max_mae_regression,
    max_latency_ms: LatencyBudget = DEFAULT_RULES.max_forward_latency_ms,
    ease_tolerance: EaseTolerance = DEFAULT_RULES.ease_tolerance,
    rating_tolerance: RatingTolerance = DEFAULT_RULES.rating_baseline_tolerance,
    as_json: AsJson = False,
) -> None:
    """Promote a version: the gate runs first unless --force; a failed check refuses."""
    from sprout.registry.promotion import (
        PromotionError, promotion_metrics, register_version, verify_champion, verify_loadable,
    )
    from sprout.registry import RegistryError

    settings, registry = _settings_and_registry()
    metrics: dict[str, Any] = {}
    if not force:
        result = _evaluate(version, settings, registry, _rules(
        ndcg_margin, max_mae_regression, max_latency_ms, ease_tolerance, rating_tolerance
    ))
        if not result["decision"]["promote"]:
            raise fail(f"the gate refused {version}: " + "; ".join(result["decision"]["reasons"]))
        metrics = promotion_metrics(result)
    try:
        register_version(version, home=settings.home, registry=registry, metrics=metrics)
        verify_loadable(version, registry)
        plan = registry.promote(version, reason=reason + (" (gate skipped with --force)" if force else ""))
        try:
            verify_champion(version, registry)
        except PromotionError:
            registry.withdraw(version, reason="verification after promotion failed")
            raise
    except (RegistryError, FileNotFoundError) as error:
        raise fail(str(error)) from None
    steps = [{"version": s.version, "from": s.from_stage, "to": s.to_stage} for s in plan]
    if as_json:
        print(json.dumps({"champion": version, "steps": steps}))
    else:
        console.print(f"champion: {version}" + ("" if steps else " (already)"))


@models_app.command("rollback")
def rollback(
    reason: Annotated[str, typer.Option(help="Why, for the history.")] = "manual rollback",
    from_version: Annotated[str | None, typer.Option(
        "--from", help="Roll back only while this version is the champion (safe to repeat).")] = None,
    as_json: AsJson = False,
) -> None:
    """Restore the previous champion and archive the current one."""
    from sprout.registry import RegistryError

    _, registry = _settings_and_registry()
    try:
        plan = registry.rollback(reason=reason, expected_champion=from_version)
    except RegistryError as error:
        raise fail(str(error)) from None
    if not plan:
        champion = registry.champion()
        message = f"{from_version} is not the champion ({champion.version if champion else 'none'} is): nothing to do"
        if as_json:
            print(json.dumps({"champion": champion.version if champion else None, "steps": []}))
        else:
            console.print(message)
        return
    champion = next(s.version for s in plan if s.to_stage == "champion")
    if as_json:
        print(json.dumps({"champion": champion, "steps": [{"version": s.version, "from": s.from_stage, "to": s.to_stage} for s in plan]}))
    else:
        console.print(f"rolled back: champion is {champion} again")


@models_app.command("history")
def history(
    limit: Annotated[int, typer.Option(min=1, help="Most recent events to show.")] = 20,
    as_json: AsJson = False,
) -> None:
    """Gate decisions and stage changes recorded in DuckDB, newest first (events still waiting
    in the registry's outbox are delivered first when the database is free)."""
    settings, registry = _settings_and_registry()
    waiting = registry.deliver_events()
    if waiting:
        err_console.print(f"{waiting} events wait for the database (held by another process); shown once delivered")
    if not settings.db_path.exists():
        raise fail(f"no database at {settings.db_path} yet")
    with open_store(settings.db_path, read_only=True) as store:
        events = store.model_events(limit=limit)
    rows = [
        {"at": e.at.isoformat(), "kind": e.kind, "version": e.model_version, "from": e.from_stage,
         "to": e.to_stage, "reason": e.reason}
        for e in events
    ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="model history")
    for column in ("at", "kind", "version", "from", "to", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(v or "") for v in row.values()))
    console.print(table)
