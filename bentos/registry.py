"""The model registry: trained model folders as versions in the BentoML model store, with stages.

Each version is a BentoML model ``sprout-recommender:<artifact version>`` holding the artifact's
own files (``weights.npz``, ``corpus.json``, ``model.json``; never a pickle) beside BentoML's
``model.yaml``. Its labels carry the stage (``challenger``, ``champion``, ``archived``), the
dataset hash, the W&B run and, once promoted, ``promoted_at``; its metadata carries the metrics,
parameter count and a stage history. Stage plans come from `sprout.registry.stages`; every
registration and stage change is also reported to an event sink (the DuckDB ``model_events``
table through `Store`, or any callable).

The store folder: ``store_dir`` when given (a model store folder of its own, e.g. in tests),
otherwise BentoML's, ``$BENTOML_HOME/models`` (``~/bentoml/models`` by default), which is what a
BentoML service in the same environment reads.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bentoml import Tag
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models.model import MODEL_YAML_FILENAME, Model, ModelContext, ModelStore

from sprout.registry.stages import (
    CHALLENGER,
    CHAMPION,
    RegistryError,
    StageState,
    Transition,
    UnknownVersion,
    champions,
    plan_promotion,
    plan_rollback,
    plan_withdrawal,
)

DEFAULT_NAME = "sprout-recommender"
ARTIFACT_METADATA_FILE = "model.json"  # as written by sprout.training.artifact
ALLOWED_SUFFIXES = (".npz", ".json")
STAGE_LABEL = "stage"
PROMOTED_AT_LABEL = "promoted_at"
ROLLED_BACK_AT_LABEL = "rolled_back_at"
READ_ATTEMPTS = 3
READ_RETRY_S = 0.02

EventSink = Callable[[dict[str, Any]], None]


class ArtifactMismatch(RegistryError):
    """A model folder that is incomplete, fails its hash check, or holds a disallowed file,
    or a version registered before with different files."""


@dataclass(frozen=True)
class ModelRecord:
    version: str
    stage: str
    labels: dict[str, str]
    metadata: dict[str, Any]
    created_at: datetime
    path: Path

    @property
    def promoted_at(self) -> datetime | None:
        value = self.labels.get(PROMOTED_AT_LABEL)
        return datetime.fromisoformat(value) if value else None

    def stage_state(self) -> StageState:
        return StageState(self.version, self.stage, self.promoted_at, ROLLED_BACK_AT_LABEL in self.labels)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def checked_artifact_files(folder: Path) -> tuple[dict[str, Any], list[Path]]:
    """The artifact's ``model.json`` and the files to copy, after checking every recorded hash."""
    metadata_file = folder / ARTIFACT_METADATA_FILE
    if not metadata_file.is_file():
        raise ArtifactMismatch(f"{folder} has no {ARTIFACT_METADATA_FILE}; is it a model folder?")
    document = json.loads(metadata_file.read_text())
    recorded = document.get("files", {})
    for name in recorded:
        if Path(name).name != name or Path(name).suffix not in ALLOWED_SUFFIXES:
            raise ArtifactMismatch(f"{folder}: {name!r} is not an allowed model file ({', '.join(ALLOWED_SUFFIXES)})")
    files = [metadata_file]
    for name, expected in recorded.items():
        path = folder / name
        if not path.is_file() or _sha256(path) != expected:
            raise ArtifactMismatch(f"{path} is missing or does not match its recorded hash")
        files.append(path)
    if len(files) == 1:
        raise ArtifactMismatch(f"{metadata_file} lists no files")
    return document, files


def store_event_sink(events: EventSink | Any | Path | str | None) -> EventSink:
    """An event sink from a callable, a `Store`, or a DuckDB path (opened per event, so the
    file is not held while the registry lives); None discards events."""
    if events is None:
        return lambda event: None
    if isinstance(events, (str, Path)):
        path = Path(events)

        def record(event: dict[str, Any]) -> None:
            from sprout.store import Store

            with Store.open(path, wait_s=30) as store:
                store.record_model_event(**event)

        return record
    if hasattr(events, "record_model_event"):
        return lambda event: events.record_model_event(**event)
    return events


class ModelRegistry:
    """Versions of the recommender in a BentoML model store, and the stage each one is in.

    Atomicity of stage changes, for a server that polls for the champion: BentoML keeps each
    model's labels in its own ``model.yaml``, so a change across two models is two writes. The
    registry keeps this invariant instead: *at every instant at least one model is labelled
    champion, and the serving champion is the one with the newest ``promoted_at``.*

    - Each label write replaces ``model.yaml`` whole (written beside it, then renamed), so a
      reader sees a model's old labels or its new ones, never half a file.
    - A plan writes the new champion (with a ``promoted_at`` newer than any other) before it
      archives the old one. In between there are two champions and the newer one wins, so the
      answer flips from old to new exactly once. A crash in between leaves two champions, which
      `champion` resolves the same way and the next promotion or rollback tidies.
    - `champion` reads every model twice, the second pass in reverse order, and counts any
      sighting of the champion label. Whatever order the files are read in, some read of the old
      champion precedes some read of the new one; that read of the old one happened before the
      old one was archived, or that read of the new one happened after it was promoted (the
      writes come in that order), so a champion is always seen.
    - Models that cannot be read (a registration still copying files, a file an outside writer
      is rewriting) are retried briefly, then left out of that answer.

    Writers in different processes take a file lock beside the store, so plans never interleave.
    """

    def __init__(
        self,
        store_dir: Path | str | None = None,
        name: str = DEFAULT_NAME,
        *,
        events: EventSink | Any | Path | str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        if store_dir is None:
            self._store: ModelStore = BentoMLContainer.model_store.get()
            self.store_dir = Path(BentoMLContainer.model_store_dir.get())
        else:
            self.store_dir = Path(store_dir)
            self.store_dir.mkdir(parents=True, exist_ok=True)
            self._store = ModelStore(self.store_dir)
        self.name = name
        self._events = store_event_sink(events)
        self._clock = clock

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.store_dir)!r}, name={self.name!r})"

    # Reading

    def _read(self, version: str) -> ModelRecord | None:
        """The model's record; None when it is not there or stays unreadable."""
        for attempt in range(READ_ATTEMPTS):
            try:
                found = self._store.list(Tag(self.name, version))
                if not found:
                    return None
                return self._record(found[0])
            except Exception:  # any unreadable entry (half-copied, mid-rewrite) is retried, then skipped
                if attempt + 1 < READ_ATTEMPTS:
                    time.sleep(READ_RETRY_S)
        return None

    def _record(self, model: Model) -> ModelRecord:
        labels = dict(model.info.labels)
        return ModelRecord(
            version=str(model.tag.version),
            stage=labels.get(STAGE_LABEL, CHALLENGER),
            labels=labels,
            metadata=dict(model.info.metadata),
            created_at=model.info.creation_time,
            path=Path(model.path),
        )

    def versions(self) -> list[str]:
        """Every version folder in the store, sorted (readable or not)."""
        folder = self.store_dir / self.name
        if not folder.is_dir():
            return []
        return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())

    def list(self) -> list[ModelRecord]:
        """Every readable version, oldest first."""
        records = [record for version in self.versions() if (record := self._read(version))]
        return sorted(records, key=lambda record: (record.created_at, record.version))

    def get(self, version: str) -> ModelRecord:
        record = self._read(version)
        if record is None:
            raise UnknownVersion(version)
        return record

    def champion(self) -> ModelRecord | None:
        """The serving champion (by label, never BentoML's ``latest``); None before the first
        promotion. See the class docstring for why a stage change never makes this None."""
        versions = self.versions()
        sightings = [
            record
            for version in versions + versions[::-1]
            if (record := self._read(version)) is not None and record.stage == CHAMPION
        ]
        newest = champions(record.stage_state() for record in sightings)
        return next(record for record in sightings if record.stage_state() == newest[0]) if newest else None

    def artifact_path(self, version: str) -> Path:
        """The folder holding the version's artifact files, readable by `read_model_artifact`."""
        return self.get(version).path

    # Writing

    @contextmanager
    def _writer(self) -> Iterator[None]:
        """One writer at a time across processes."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with open(self.store_dir / f".{self.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _emit(self, kind: str, version: str | None, at: datetime, **fields: Any) -> None:
        self._events({"kind": kind, "model_version": version, "at": at, **fields})

    def record_event(
        self, kind: str, version: str | None, *, reason: str | None = None, details: dict | None = None
    ) -> None:
        """Report an event the registry does not make itself ('evaluated', 'gate') to the same sink."""
        self._emit(kind, version, self._clock(), reason=reason, details=details or {})

    def register(
        self,
        model_folder: Path | str,
        *,
        dataset_hash: str,
        wandb_run_id: str | None,
        metrics: dict[str, Any],
    ) -> str:
        """Copy a checked model folder into the store as a challenger; returns its version.

        Registering the same version again returns it unchanged; the same version with other
        files raises `ArtifactMismatch`.
        """
        folder = Path(model_folder)
        document, files = checked_artifact_files(folder)
        version = str(document.get("version") or folder.name)
        with self._writer():
            existing = self._read(version)
            if existing is not None:
                self._check_same(existing, folder)
                return version
            at = self._clock()
            labels = {STAGE_LABEL: CHALLENGER, "dataset": dataset_hash[:16], "wandb_run": wandb_run_id or ""}
            metadata = {
                "metrics": dict(metrics),
                "parameters": document.get("parameters"),
                "created_at": document.get("created_at"),
                "registered_at": at.isoformat(),
                "dataset_sha256": dataset_hash,
                "stage_history": [{"at": at.isoformat(), "to": CHALLENGER, "reason": "registered"}],
            }
            self._save(version, files, labels, metadata)
        self._emit(
            "registered",
            version,
            at,
            to_stage=CHALLENGER,
            reason="registered",
            details={"metrics": dict(metrics), "dataset": dataset_hash, "wandb_run": wandb_run_id},
        )
        return version

    def _check_same(self, existing: ModelRecord, folder: Path) -> None:
        ours = _sha256(folder / ARTIFACT_METADATA_FILE)
        theirs = existing.path / ARTIFACT_METADATA_FILE
        if not theirs.is_file() or _sha256(theirs) != ours:
            raise ArtifactMismatch(f"version {existing.version} is already registered with different files")

    def _save(self, version: str, files: list[Path], labels: dict[str, str], metadata: dict[str, Any]) -> None:
        # What bentoml.models.create does, without its usage-tracking request.
        model = Model.create(
            Tag(self.name, version),
            module="",
            api_version="v1",
            signatures={},
            labels=labels,
            metadata=metadata,
            context=ModelContext(framework_name="", framework_versions={}),
        )
        for path in files:
            shutil.copyfile(path, Path(model.path) / path.name)
        model.flush()
        model.save(self._store)

    def _write_labels(
        self, version: str, at: datetime, set_labels: dict[str, str], drop: tuple[str, ...], history: dict
    ) -> None:
        """Replace one model's ``model.yaml`` with updated labels, in one rename."""
        found = self._store.list(Tag(self.name, version))
        if not found:
            raise UnknownVersion(version)
        model = found[0]
        labels = model.info.labels
        labels.update(set_labels)
        for key in drop:
            labels.pop(key, None)
        model.info.metadata.setdefault("stage_history", []).append({"at": at.isoformat(), **history})
        folder = Path(model.path)
        handle, staging = tempfile.mkstemp(prefix=".model-", suffix=".yaml.partial", dir=folder)
        try:
            with os.fdopen(handle, "w", encoding="utf8") as stream:
                model.info.dump(stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(staging, folder / MODEL_YAML_FILENAME)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise

    def _states(self) -> list[StageState]:
        return [record.stage_state() for record in self.list()]

    def _next_promoted_at(self, states: list[StageState]) -> datetime:
        """Now, or just after the newest promotion when the clock has not moved past it."""
        now = self._clock()
        newest = max((state.promoted_at for state in states if state.promoted_at), default=None)
        return now if newest is None or now > newest else newest + timedelta(microseconds=1)

    @staticmethod
    def _label_changes(step: Transition, at: datetime) -> tuple[dict[str, str], tuple[str, ...]]:
        """Labels to set and to drop for one step."""
        if step.to_stage == CHAMPION:
            return {STAGE_LABEL: CHAMPION, PROMOTED_AT_LABEL: at.isoformat()}, (ROLLED_BACK_AT_LABEL,)
        if step.kind == "rolled_back":
            return {STAGE_LABEL: step.to_stage, ROLLED_BACK_AT_LABEL: at.isoformat()}, ()
        return {STAGE_LABEL: step.to_stage}, ()

    def _apply(self, plan: list[Transition], states: list[StageState], reason: str, details: dict[str, Any]) -> None:
        """Write each step's labels in plan order, reporting each once it is written."""
        promoted_at = self._next_promoted_at(states)
        for step in plan:
            at = promoted_at if step.to_stage == CHAMPION else self._clock()
            set_labels, drop = self._label_changes(step, at)
            history = {"from": step.from_stage, "to": step.to_stage, "kind": step.kind, "reason": reason}
            self._write_labels(step.version, at, set_labels, drop, history)
            self._emit(
                step.kind,
                step.version,
                at,
                from_stage=step.from_stage,
                to_stage=step.to_stage,
                reason=reason,
                details=details,
            )

    def promote(self, version: str, reason: str, numbers: dict[str, Any] | None = None) -> list[Transition]:
        """Make ``version`` the champion and archive the one it replaces; returns the steps taken
        (none when it already is the champion). ``numbers`` (metrics, gate checks) go with each event."""
        with self._writer():
            states = self._states()
            plan = plan_promotion(states, version)
            self._apply(plan, states, reason, dict(numbers or {}))
        return plan

    def rollback(self, reason: str, numbers: dict[str, Any] | None = None) -> list[Transition]:
        """Restore the previous champion and archive the current one; returns the steps taken.

        Raises `NoPreviousChampion` when there is nothing to go back to.
        """
        with self._writer():
            states = self._states()
            plan = plan_rollback(states)
            self._apply(plan, states, reason, dict(numbers or {}))
        return plan

    def withdraw(self, version: str, reason: str, numbers: dict[str, Any] | None = None) -> list[Transition]:
        """Undo ``version``'s promotion (see `plan_withdrawal`); nothing when it is not champion."""
        with self._writer():
            states = self._states()
            plan = plan_withdrawal(states, version)
            self._apply(plan, states, reason, dict(numbers or {}))
        return plan
