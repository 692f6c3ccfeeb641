"""Retrain flow: build a snapshot → train → model artifact, with Prefect artifacts for both.

Production runs it on the `sprout-rocm` work pool (ROCm JAX image, GPU devices passed through,
see infra/); the same flow runs on a process pool on CPU.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from flows.limits import duckdb_access
from sprout.config import Settings
from sprout.training.presets import PRESETS, get_preset
from sprout.progress import training_progress
from sprout.training.freshness import profiles_changed_since_training
from sprout.training.run import build_dataset, train_model

MODEL_TRAINED = "sprout.model.trained"


class RetrainParameters(BaseModel):
    """What the retrain deployment's form asks for."""

    config: str = Field("default", description=f"Named preset: {', '.join(PRESETS)}.")
    snapshot_date: date | None = Field(None, description="Entries updated after this day are left out; default the newest entry's day.")
    track: bool = Field(True, description="Log the run to W&B (offline without WANDB_API_KEY).")
    min_changed_profiles: int = Field(
        0, ge=0, description="Skip unless at least this many profiles changed since the last training."
    )
    show_progress: bool = Field(False, description="Draw a progress bar on the terminal (interactive runs).")
    announce: bool = Field(True, description="Emit sprout.model.trained (off inside the pipeline, which gates itself).")


@task(cache_policy=NO_CACHE)
def changed_profiles_task(settings: Settings) -> int:
    if not settings.db_path.exists():
        return 0
    with duckdb_access():
        return profiles_changed_since_training(settings.home, settings.db_path)


@task(cache_policy=NO_CACHE)
def build_snapshot_task(settings: Settings, config: str, snapshot_date: date | None) -> dict:
    with duckdb_access():
        manifest = build_dataset(settings.home, settings.db_path, get_preset(config), snapshot_date)
    rows = [{"split": name, **counts.model_dump()} for name, counts in manifest.splits.items()]
    create_table_artifact(key="dataset-manifest", table=rows, description=f"Snapshot {manifest.snapshot_id} ({manifest.snapshot_date}), corpus {manifest.corpus_size}")
    return {"snapshot_id": manifest.snapshot_id, "snapshot_date": manifest.snapshot_date}


@task(cache_policy=NO_CACHE)
def train_task(
    settings: Settings, config: str, snapshot_id: str, track: bool, show_progress: bool = False, announce: bool = True
) -> dict:
    with training_progress(show_progress) as progress:
        summary = train_model(settings.home, get_preset(config), snapshot_id, track=track, progress=progress,
                              devices=settings.train_devices)
    figures = {**summary["final"], **summary["validation"],
               "validation_popularity_ndcg@100": summary["validation_popularity_ndcg@100"],
               "steps": summary["steps"], "stopped_by": summary["stopped_by"], "parameters": summary["parameters"]}
    create_table_artifact(
        key="training-summary", table=[{"figure": k, "value": v} for k, v in figures.items()],
        description=f"Model {summary['model_version']} on snapshot {snapshot_id}",
    )
    create_markdown_artifact(
        key="training-run",
        markdown=f"Model `{summary['model_version']}` — W&B run `{summary['wandb_run_id']}` "
        f"(project `sprout`; offline runs sync with `wandb sync {settings.workspace.wandb}`).",
    )
    if not announce:
        return summary
    emit_event(
        event=MODEL_TRAINED,
        resource={"prefect.resource.id": f"sprout.model.{summary['model_version']}", "prefect.resource.name": "sprout model"},
        payload={"model_version": summary["model_version"], "snapshot_id": snapshot_id,
                 "wandb_run_id": summary["wandb_run_id"], **summary["validation"]},
    )
    return summary


@flow(name="retrain", log_prints=True)
def retrain_flow(params: RetrainParameters = RetrainParameters()) -> dict:
    """Snapshot the store and train a candidate model (when enough has changed)."""
    settings = Settings()  # once per run; its secrets stay SecretStr wherever it goes
    if params.min_changed_profiles:
        changed = changed_profiles_task(settings)
        if changed < params.min_changed_profiles:
            print(f"{changed} profiles changed since the last training (< {params.min_changed_profiles}): skipped")
            return {"skipped": True, "changed_profiles": changed}
    snapshot = build_snapshot_task(settings, params.config, params.snapshot_date)
    summary = train_task(settings, params.config, snapshot["snapshot_id"], params.track, params.show_progress,
                         params.announce)
    print(f"model {summary['model_version']}: validation NDCG@100 {summary['validation'].get('val/ndcg@100')}")
    return {"skipped": False, **summary}


if __name__ == "__main__":
    retrain_flow()
