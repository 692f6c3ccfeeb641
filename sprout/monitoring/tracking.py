"""The model-health W&B run: every check of a champion so far, one step per check, so its charts
show the trend (offline without ``WANDB_API_KEY``, like training runs)."""

from __future__ import annotations

from pathlib import Path

from sprout.store.health_checks import HealthCheckRow
from sprout.training.tracking import WandbTracker

from .report import headline

PROJECT = "sprout"


def log_health_run(checks: list[HealthCheckRow], folder: Path, project: str = PROJECT) -> str | None:
    """Log ``checks`` (one champion's, any order) as a ``monitor`` run; returns its id."""
    if not checks:
        return None
    ordered = sorted(checks, key=lambda c: c.checked_at)
    newest = ordered[-1]
    tracker = WandbTracker(
        project, {"model_version": newest.model_version, "snapshot_id": newest.snapshot_id, "checks": len(ordered)},
        folder, name=f"model-health-{newest.model_version}", tags=["monitor", "model-health"],
    )
    try:
        for step, check in enumerate(ordered):
            numbers = {k: float(v) for k, v in headline(check.figures).items() if isinstance(v, (int, float))}
            tracker.log({**numbers, "degraded": float(check.degraded),
                         "days_since_snapshot": float(check.figures.get("days_since_snapshot") or 0)}, step=step)
        tracker.summary({"degraded": newest.degraded, "reasons": "; ".join(newest.figures.get("reasons", []))})
    finally:
        tracker.finish()
    return tracker.run_id
