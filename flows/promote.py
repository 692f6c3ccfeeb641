"""Evaluate-and-promote flow: score the challenger against the champion and the baselines, apply
the gate, and promote a passing model inside a transaction that undoes a half-done promotion.

Every gate decision lands in DuckDB (``model_events``), in a Prefect table + markdown artifact
(challenger vs champion vs baselines, with the decision) and in the model's W&B run summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.transactions import get_transaction, transaction
from pydantic import BaseModel, Field

from bentos.registry import open_registry
from sprout.config import Settings
from sprout.evaluation.gate import GateRules
from sprout.evaluation.report import comparison_rows, decision_markdown, wandb_summary
from sprout.registry.promotion import (
    evaluate_version,
    model_document,
    promotion_metrics,
    register_version,
    verify_champion,
    verify_loadable,
)
from sprout.training.run import WANDB_PROJECT
from sprout.training.tracking import WandbTracker


class EvaluatePromoteParameters(BaseModel):
    """What the evaluate-promote deployment's form asks for."""

    version: str | None = Field(None, description="Model version to evaluate; default the newest trained model.")
    rules: GateRules = Field(default_factory=GateRules, description="What the challenger must show to be promoted.")
    promote: bool = Field(True, description="Promote when the gate passes (off: evaluate and record only).")


@task(cache_policy=NO_CACHE)
def evaluate_task(settings: Settings, version: str, rules: GateRules) -> dict[str, Any]:
    return evaluate_version(version, home=settings.home, registry=open_registry(settings), rules=rules)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def publish_task(settings: Settings, result: dict[str, Any]) -> None:
    """The comparison as Prefect artifacts, and the same summary on the model's W&B run."""
    document = model_document(Path(result["model_folder"]))
    run_id = document.get("wandb_run_id")
    create_table_artifact(
        key="evaluation", table=comparison_rows(result),
        description=f"{result['split']} users of snapshot {result['snapshot_id']} (W&B run {run_id or 'none'})",
    )
    create_markdown_artifact(key="gate-decision", markdown=decision_markdown(result))
    if run_id:
        tracker = WandbTracker(WANDB_PROJECT, {}, settings.workspace.wandb, run_id=run_id)
        try:
            tracker.summary(wandb_summary(result))
        finally:
            tracker.finish()


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def register_task(settings: Settings, version: str, metrics: dict[str, float]) -> str:
    return register_version(version, home=settings.home, registry=open_registry(settings), metrics=metrics)


@task(cache_policy=NO_CACHE)
def verify_loadable_task(settings: Settings, version: str) -> dict[str, Any]:
    return verify_loadable(version, open_registry(settings))


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def promote_task(settings: Settings, version: str, reasons: list[str], numbers: dict[str, Any]) -> list[str]:
    """One atomic stage change: it happened or it did not, and a retry is a no-op once it has."""
    get_transaction().set("promoting", version)
    get_transaction().set("settings", settings)
    plan = open_registry(settings).promote(version, reason="gate passed: " + "; ".join(reasons), numbers=numbers)
    return [f"{step.version}: {step.from_stage} -> {step.to_stage}" for step in plan]


@promote_task.on_rollback
def undo_promotion(txn) -> None:
    """A later step failed: restore the champion this promotion replaced (or none)."""
    version = txn.get("promoting", None)
    if version:
        open_registry(txn.get("settings")).withdraw(version, reason="promotion rolled back: a later step failed")


@task(cache_policy=NO_CACHE)
def verify_task(settings: Settings, version: str) -> dict[str, Any]:
    return verify_champion(version, open_registry(settings))


@flow(name="evaluate-promote", log_prints=True)
def evaluate_promote_flow(params: EvaluatePromoteParameters = EvaluatePromoteParameters()) -> dict[str, Any]:
    """Gate a trained model against the champion and baselines; promote it when it passes."""
    settings = Settings()  # once per run; its secrets stay SecretStr wherever it goes
    version = params.version or settings.workspace.newest_model()
    if version is None:
        raise ValueError("no trained model to evaluate: run the retrain flow first")
    result = evaluate_task(settings, version, params.rules)
    publish_task(settings, result)
    decision = result["decision"]
    print(f"gate for {version}: {'promote' if decision['promote'] else 'reject'} — {'; '.join(decision['reasons'])}")
    promoted = False
    if decision["promote"] and params.promote:
        with transaction():
            register_task(settings, version, promotion_metrics(result))
            verify_loadable_task(settings, version)
            promote_task(settings, version, decision["reasons"], {"checks": decision["checks"]})
            verify_task(settings, version)
        promoted = True
    return {"version": version, "promote": decision["promote"], "promoted": promoted,
            "reasons": decision["reasons"], "champion_version": result["champion_version"],
            "challenger": result["challenger"], "baselines": result["baselines"]}


class RollbackParameters(BaseModel):
    """What the rollback deployment's form asks for."""

    reason: str = Field("manual rollback", min_length=1, description="Why, for the model history.")


@flow(name="rollback", log_prints=True)
def rollback_flow(params: RollbackParameters = RollbackParameters()) -> dict[str, Any]:
    """Restore the previous champion and archive the current one (servers pick it up by polling).

    The flow run's id names the request, so a retried run does not roll back a second time.
    """
    plan = open_registry(Settings()).rollback(reason=params.reason, operation_id=f"rollback-flow-{flow_run.get_id()}")
    steps = [{"version": s.version, "from": s.from_stage, "to": s.to_stage} for s in plan]
    champion = next(s["version"] for s in steps if s["to"] == "champion")
    create_markdown_artifact(
        key="rollback", markdown=f"Rolled back to `{champion}`: {params.reason}\n\n"
        + "\n".join(f"- `{s['version']}`: {s['from']} → {s['to']}" for s in steps),
    )
    print(f"champion is {champion} again")
    return {"champion": champion, "steps": steps}


if __name__ == "__main__":
    evaluate_promote_flow()
