"""What the platform needs from a model registry, and the record it returns for a version.

`bentos.registry.ModelRegistry` implements it on BentoML's model store; the promotion steps in
`sprout.registry.promotion` are written against this protocol only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from .stages import StageState, Transition

STAGE_LABEL = "stage"
PROMOTED_AT_LABEL = "promoted_at"
ROLLED_BACK_AT_LABEL = "rolled_back_at"


@dataclass(frozen=True)
class ModelRecord:
    version: str
    stage: str
    labels: dict[str, str]
    metadata: dict[str, Any]
    created_at: datetime
    path: Path  # the folder holding the artifact's files

    @property
    def promoted_at(self) -> datetime | None:
        value = self.labels.get(PROMOTED_AT_LABEL)
        return datetime.fromisoformat(value) if value else None

    def stage_state(self) -> StageState:
        return StageState(self.version, self.stage, self.promoted_at, ROLLED_BACK_AT_LABEL in self.labels)


class Registry(Protocol):
    def get(self, version: str) -> ModelRecord: ...

    def champion(self) -> ModelRecord | None: ...

    def artifact_path(self, version: str) -> Path: ...

    def register(
        self, model_folder: Path | str, *, dataset_hash: str, wandb_run_id: str | None, metrics: dict[str, Any]
    ) -> str: ...

    def promote(
        self, version: str, reason: str, numbers: dict[str, Any] | None = None, *, operation_id: str | None = None
    ) -> list[Transition]: ...

    def record_event(
        self, kind: str, version: str | None, *, reason: str | None = None, details: dict | None = None
    ) -> None: ...
