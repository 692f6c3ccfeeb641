"""The event-driven half of the loop in one process, without work pools or workers.

Serves two deployments with the triggers ``prefect.yaml`` gives them: ``retrain`` on every
``sprout.crawl.completed`` event (the flow skips itself until enough profiles changed since the
last training) and ``evaluate-promote`` on every ``sprout.model.trained`` event. Triggered runs
execute as child processes of this one. For a laptop, a demo or a test; production uses the
deployments in ``prefect.yaml`` on the work pools.

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve_local --config small
"""

from __future__ import annotations

import typer
from prefect import serve
from prefect.events import DeploymentEventTrigger

from flows.crawl import CRAWL_COMPLETED
from flows.promote import evaluate_promote_flow
from flows.retrain import MODEL_TRAINED, retrain_flow


def deployments(config: str, min_changed_profiles: int, suffix: str = "local") -> list:
    retrain = retrain_flow.to_deployment(
        f"retrain-{suffix}",
        parameters={"params": {"config": config, "min_changed_profiles": min_changed_profiles}},
        triggers=[DeploymentEventTrigger(expect={CRAWL_COMPLETED}, match={"prefect.resource.id": "sprout.crawl.*"})],
        concurrency_limit=1,
    )
    promote = evaluate_promote_flow.to_deployment(
        f"evaluate-promote-{suffix}",
        triggers=[DeploymentEventTrigger(expect={MODEL_TRAINED}, match={"prefect.resource.id": "sprout.model.*"})],
        concurrency_limit=1,
    )
    return [retrain, promote]


def main(
    config: str = typer.Option("small", help="Training preset for triggered retraining."),
    min_changed_profiles: int = typer.Option(50, min=0, help="Changed profiles since the last training that warrant a new one."),
) -> None:
    serve(*deployments(config, min_changed_profiles))


if __name__ == "__main__":
    typer.run(main)
