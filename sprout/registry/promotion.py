"""Evaluate a trained model against the registry's champion, record the gate, promote on a pass.

The steps the ``evaluate-promote`` flow and the ``sprout evaluate`` / ``sprout models`` commands
share, written against the `Registry` protocol. A model is found by version among the trained artifacts under ``$SPROUT_HOME/models`` or,
failing that, in the registry. It is scored on the test users of the snapshot it was trained on;
the champion is re-scored on those same users (never compared on its old numbers).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sprout.evaluation.gate import GateRules
from sprout.evaluation.promotion import evaluate_artifact
from sprout.model.artifact import METADATA_FILE, read_model_artifact
from sprout.workspace import Workspace

from .protocol import Registry
from .stages import CHAMPION, RegistryError


class PromotionError(RegistryError):
    """A promotion that could not be completed or verified."""


def find_model_folder(version: str, home: Path, registry: Registry) -> Path:
    """The artifact folder of ``version``: a trained model under home, else a registered one."""
    local = Workspace(home).model(version)
    if (local / METADATA_FILE).is_file():
        return local
    return registry.artifact_path(version)  # raises UnknownVersion


def model_document(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / METADATA_FILE).read_text(encoding="utf-8"))


def training_snapshot(folder: Path, home: Path) -> Path:
    snapshot_id = model_document(folder).get("dataset", {}).get("snapshot_id")
    workspace = Workspace(home)
    path = workspace.snapshot(str(snapshot_id))
    if not snapshot_id or not path.is_dir():
        raise FileNotFoundError(
            f"model {folder.name} was trained on snapshot {snapshot_id!r}, which is not under {workspace.snapshots}"
        )
    return path


def gate_summary(result: dict[str, Any]) -> dict[str, Any]:
    """What a gate event keeps: the decision with every number, and where it was measured."""
    return {
        "snapshot_id": result["snapshot_id"],
        "split": result["split"],
        "champion_version": result["champion_version"],
        "champion_status": result["champion_status"],
        **result["decision"],
    }


def evaluate_version(
    version: str, *, home: Path, registry: Registry, rules: GateRules | None = None, split: str = "test"
) -> dict[str, Any]:
    """Score ``version``, the champion and the baselines on the same users; record the gate decision."""
    folder = find_model_folder(version, home, registry)
    champion = registry.champion()
    champion_folder = champion.path if champion is not None and champion.version != version else None
    result = evaluate_artifact(folder, training_snapshot(folder, home), split, rules, champion_folder)
    result["model_folder"] = str(folder)
    decision = result["decision"]
    registry.record_event("gate", version, reason="; ".join(decision["reasons"]), details=gate_summary(result))
    return result


def promotion_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """What a promoted model keeps from its evaluation: its own metrics, and popularity's and
    EASE's NDCG@100 on the same users (a later health check compares its standing against them)."""
    baselines = result.get("baselines", {})
    return {**result["challenger"], **{f"{name}_ndcg@100": baselines[name]["ndcg@100"]
                                       for name in ("popularity", "ease") if name in baselines}}


def register_version(version: str, *, home: Path, registry: Registry, metrics: dict[str, Any]) -> str:
    """Put a trained model into the registry as a challenger (a no-op when it is there already)."""
    folder = find_model_folder(version, home, registry)
    document = model_document(folder)
    return registry.register(
        folder,
        dataset_hash=document.get("dataset", {}).get("content_sha256", ""),
        wandb_run_id=document.get("wandb_run_id"),
        metrics={k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)},
    )


def verify_loadable(version: str, registry: Registry) -> dict[str, Any]:
    """Check what a server would load for ``version``: its files in the store pass their hashes,
    and a forward pass over a small profile gives finite outputs. Run before promoting it."""
    record = registry.get(version)
    try:
        model, _ = read_model_artifact(record.path)
    except (OSError, ValueError, KeyError) as error:
        raise PromotionError(f"model {version} cannot be loaded from the store: {error}") from error
    corpus = model.config.corpus_size
    items = np.arange(min(10, corpus), dtype=np.int32)[None, :]  # [1, L]: the most popular shows
    values = np.zeros(items.shape, np.float32)
    mask = np.ones(items.shape, bool)
    logits, ratings = model(items, values, mask)  # one eager pass: nothing to compile for
    if not (bool(jax.numpy.isfinite(logits).all()) and bool(jax.numpy.isfinite(ratings).all())):
        raise PromotionError(f"model {version} gives non-finite outputs")
    return {"version": version, "path": str(record.path)}


def verify_champion(version: str, registry: Registry) -> dict[str, Any]:
    """After promoting ``version``: it is what a server now loads as the champion."""
    champion = registry.champion()
    if champion is None or champion.version != version or champion.stage != CHAMPION:
        found = None if champion is None else champion.version
        raise PromotionError(f"after promoting {version} the registry's champion is {found}")
    return {"version": version, "path": str(champion.path)}
