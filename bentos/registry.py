"""The model registry: trained model folders as versions in the BentoML model store, with stages.

Each version is a BentoML model ``sprout-recommender:<artifact version>`` holding the artifact's
own files (``weights.npz``, ``corpus.json``, ``model.json``; never a pickle) beside BentoML's
``model.yaml``. Which stage each version is in (``challenger``, ``champion``, ``archived``) is
kept in the registry's stage journal (`sprout.registry.journal`), one file beside the versions
that every stage change replaces whole; each model's labels mirror it (stage, ``promoted_at``)
for BentoML's own tools, beside the dataset hash and the W&B run, and its metadata carries the
metrics, parameter count and stage history. Stage plans come from `sprout.registry.stages`;
every registration, stage change and gate decision goes through the journal's outbox to an event
sink (the DuckDB ``model_events`` table through `Store`, or any callable).

The store folder: ``store_dir`` when given (a model store folder of its own, e.g. in tests),
otherwise BentoML's, ``$BENTOML_HOME/models`` (``~/bentoml/models`` by default), which is what a
BentoML service in the same environment reads.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bentoml import Tag
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.models.model import MODEL_YAML_FILENAME, Model, ModelContext, ModelStore

from sprout.config import Settings
from sprout.durable_files import file_sha256, fsync_folder, fsync_tree
from sprout.model.artifact import METADATA_FILE, ArtifactError, verified_files
from sprout.registry.journal import Journal, ModelStage, new_event, read_journal, write_journal
from sprout.registry.protocol import PROMOTED_AT_LABEL, ROLLED_BACK_AT_LABEL, STAGE_LABEL, ModelRecord
from sprout.registry.stages import (
    ARCHIVED,
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
READ_ATTEMPTS = 3
READ_RETRY_S = 0.02
EVENT_WAIT_S = 2.0  # how long delivering the history waits for a busy database before leaving it queued
STAGING_PREFIX = ".staging-"

EventSink = Callable[[list[dict[str, Any]]], None]
logger = logging.getLogger(__name__)


class ArtifactMismatch(RegistryError, ArtifactError):
    """A model folder that is incomplete, fails its hash check, or holds a disallowed file,
    or a version registered before with different files."""


def open_registry(settings: Settings) -> "ModelRegistry":
    """The registry in the configured model store, with its history in the platform's DuckDB."""
    return ModelRegistry(settings.model_store, events=settings.db_path)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def store_event_sink(events: EventSink | Any | Path | str | None) -> EventSink:
    """An event sink from a callable (given a batch of events), a `Store`, or a DuckDB path
    (opened per delivery for at most `EVENT_WAIT_S`, so the file is not held while the registry
    lives); None discards events."""
    if events is None:
        return lambda batch: None
    if isinstance(events, (str, Path)):
        path = Path(events)

        def record(batch: list[dict[str, Any]]) -> None:
            from sprout.store import Store

            with Store.open(path, wait_s=EVENT_WAIT_S) as store:
                store.record_model_events(batch)

        return record
    if hasattr(events, "record_model_events"):
        return events.record_model_events
    return events


class ModelRegistry:
    """Versions of the recommender in a BentoML model store, and the stage each one is in.

    All-or-nothing stage changes: the stage journal is the truth, and a change across several
    models (promote v3, archive v2) is one atomic replacement of it, so every reader — a server
    polling for the champion included — sees exactly one champion at every instant, and a change
    killed at any point is either done or not. Each model's labels are then rewritten to mirror
    the journal (each ``model.yaml`` replaced in one rename); a mirror left behind by a crash is
    repaired by the next writer, and nothing reads stages from labels while a journal exists (a
    store written before the journal existed is read from its labels until its first change).

    Events (registrations, stage changes, gate decisions) enter the journal's outbox in the same
    write as the change and are delivered afterwards; a database held by another process delays
    them, never the change, and the next writer (or `deliver_events`) delivers them, once each.

    Registration copies files into a staging folder and renames it into place, so a version
    folder is complete or absent. Writers in different processes take a file lock beside the
    store, so changes never interleave.
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
        self.journal_path = self.store_dir / f".{name}.stages.json"
        self._events = store_event_sink(events)
        self._clock = clock

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.store_dir)!r}, name={self.name!r})"

    def _reached(self, step: str) -> None:
        """Called at each durable step of a change; a no-op (crash tests stop a child process here)."""

    # Reading

    def _journal(self) -> Journal:
        """The stage journal, or for a store that has none yet, the stages its labels record."""
        journal = read_journal(self.journal_path)
        return journal if journal is not None else self._journal_from_labels()

    def _journal_from_labels(self) -> Journal:
        folders = [model for version in self.versions() if (model := self._model(version)) is not None]
        states = [
            StageState(str(m.tag.version), m.info.labels.get(STAGE_LABEL, CHALLENGER),
                       _parse_time(m.info.labels.get(PROMOTED_AT_LABEL)), ROLLED_BACK_AT_LABEL in m.info.labels)
            for m in folders
        ]
        newest = champions(states)  # a crash between label writes could leave two: the newest serves
        models = {}
        for model, state in zip(folders, states):
            labels = model.info.labels
            stage = ARCHIVED if state.stage == CHAMPION and state != newest[0] else state.stage
            models[state.version] = ModelStage(stage, labels.get(PROMOTED_AT_LABEL), labels.get(ROLLED_BACK_AT_LABEL),
                                               tuple(model.info.metadata.get("stage_history", ())))
        return Journal(models)

    def _model(self, version: str) -> Model | None:
        """The BentoML model of ``version``; None when it is not there or stays unreadable."""
        for attempt in range(READ_ATTEMPTS):
            try:
                found = self._store.list(Tag(self.name, version))
                return found[0] if found else None
            except Exception:  # any unreadable entry (a file an outside writer is rewriting) is retried, then skipped
                if attempt + 1 < READ_ATTEMPTS:
                    time.sleep(READ_RETRY_S)
        return None

    def _read(self, version: str, journal: Journal) -> ModelRecord | None:
        model = self._model(version)
        return None if model is None else self._record(model, journal)

    def _record(self, model: Model, journal: Journal) -> ModelRecord:
        version = str(model.tag.version)
        labels, metadata = dict(model.info.labels), dict(model.info.metadata)
        stage = journal.models.get(version)
        if stage is not None:
            labels = _mirrored_labels(labels, stage)
            metadata["stage_history"] = list(stage.history)
        return ModelRecord(
            version=version,
            stage=stage.stage if stage is not None else CHALLENGER,
            labels=labels,
            metadata=metadata,
            created_at=model.info.creation_time,
            path=Path(model.path),
        )

    def versions(self) -> list[str]:
        """Every version folder in the store, sorted (readable or not; staging folders excluded)."""
        folder = self.store_dir / self.name
        if not folder.is_dir():
            return []
        return sorted(entry.name for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith("."))

    def list(self) -> list[ModelRecord]:
        """Every readable version, oldest first."""
        journal = self._journal()
        records = [record for version in self.versions() if (record := self._read(version, journal))]
        return sorted(records, key=lambda record: (record.created_at, record.version))

    def get(self, version: str) -> ModelRecord:
        record = self._read(version, self._journal())
        if record is None:
            raise UnknownVersion(version)
        return record

    def champion(self) -> ModelRecord | None:
        """The serving champion (by stage, never BentoML's ``latest``); None before the first
        promotion. One read of the journal: a stage change never shows zero or two champions."""
        journal = self._journal()
        version = journal.champion()
        return None if version is None else self._read(version, journal)

    def artifact_path(self, version: str) -> Path:
        """The folder holding the version's artifact files, readable by `read_model_artifact`."""
        return self.get(version).path

    def pending_events(self) -> int:
        """Events recorded in the journal and not yet delivered to the event sink."""
        return len(self._journal().outbox)

    # Writing

    @contextmanager
    def _writer(self) -> Iterator[Journal]:
        """One writer at a time across processes; yields the journal, with leftovers of a
        killed registration cleared and complete versions it never recorded adopted."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with open(self.store_dir / f".{self.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield self._recovered()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _recovered(self) -> Journal:
        """The journal after repairing what a killed writer left: staging folders removed, and
        complete versions it never recorded adopted (and committed, so no caller need check)."""
        folder = self.store_dir / self.name
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.is_dir() and entry.name.startswith(STAGING_PREFIX):
                    shutil.rmtree(entry, ignore_errors=True)
        journal = found = self._journal()
        for version in self.versions():
            if version not in journal.models and (model := self._model(version)) is not None:
                at = self._clock()
                metrics = dict(model.info.metadata.get("metrics", {}))
                journal = journal.registered(version, at, new_event(
                    "registered", version, at, to_stage=CHALLENGER, reason="registered", details={"metrics": metrics}))
        return journal if journal is found else self._commit(journal)

    def _commit(self, journal: Journal) -> Journal:
        written = write_journal(self.journal_path, journal)
        self._reached("committed")
        return written

    def _settle(self, journal: Journal) -> None:
        """After a commit: bring the labels in line with the journal, then deliver its events.
        Neither can undo the change; what fails here is retried by the next writer."""
        try:
            self._mirror(journal)
        except Exception:
            logger.exception("could not mirror stages into model labels; the next change retries")
        self._deliver(journal)

    def _mirror(self, journal: Journal) -> None:
        """Rewrite the ``model.yaml`` of every model whose labels or history differ from the journal."""
        for version, stage in journal.models.items():
            model = self._model(version)
            if model is None:
                continue
            labels = _mirrored_labels(dict(model.info.labels), stage)
            history = list(stage.history)
            if labels == dict(model.info.labels) and history == list(model.info.metadata.get("stage_history", [])):
                continue
            model.info.labels.clear()
            model.info.labels.update(labels)
            model.info.metadata["stage_history"] = history
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
            self._reached(f"mirrored {version}")

    def _deliver(self, journal: Journal) -> Journal:
        """Hand the outbox to the event sink; on success drop what was delivered."""
        if not journal.outbox:
            return journal
        batch = list(journal.outbox)
        try:
            self._events(batch)
        except Exception as error:  # a busy or missing database: the events wait in the outbox
            logger.warning("%d model events wait for the history (%s); the next registry change delivers them",
                           len(batch), error)
            return journal
        self._reached("delivered")
        return self._commit(journal.without_events({event["event_id"] for event in batch}))

    def deliver_events(self) -> int:
        """Deliver events waiting in the outbox; returns how many remain undelivered."""
        with self._writer() as journal:
            return len(self._deliver(journal).outbox)

    def record_event(
        self, kind: str, version: str | None, *, reason: str | None = None, details: dict | None = None
    ) -> None:
        """Report an event the registry does not make itself ('evaluated', 'gate') the same way
        as its own: into the outbox at once, to the history when the database is free."""
        with self._writer() as journal:
            event = new_event(kind, version, self._clock(), reason=reason, details=details or {})
            self._deliver(self._commit(journal.with_events([event])))

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
        try:
            document, files = verified_files(folder)
        except ArtifactError as error:
            raise ArtifactMismatch(str(error)) from None
        version = str(document.get("version") or folder.name)
        with self._writer() as journal:
            existing = self._read(version, journal)
            if existing is not None:
                self._check_same(existing, folder)
            else:
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
                self._place(version, files, labels, metadata)
                details = {"metrics": dict(metrics), "dataset": dataset_hash, "wandb_run": wandb_run_id}
                journal = self._commit(journal.registered(version, at, new_event(
                    "registered", version, at, to_stage=CHALLENGER, reason="registered", details=details)))
            self._deliver(journal)
        return version

    def _check_same(self, existing: ModelRecord, folder: Path) -> None:
        ours = file_sha256(folder / METADATA_FILE)
        theirs = existing.path / METADATA_FILE
        if not theirs.is_file() or file_sha256(theirs) != ours:
            raise ArtifactMismatch(f"version {existing.version} is already registered with different files")

    def _place(self, version: str, files: list[Path], labels: dict[str, str], metadata: dict[str, Any]) -> None:
        """Write the version's folder beside the others under a staging name, then rename it in."""
        # What bentoml.models.create does, without its usage-tracking request, and staged.
        model = Model.create(
            Tag(self.name, version),
            module="",
            api_version="v1",
            signatures={},
            labels=labels,
            metadata=metadata,
            context=ModelContext(framework_name="", framework_versions={}),
        )
        parent = self.store_dir / self.name
        parent.mkdir(parents=True, exist_ok=True)
        staging = parent / f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        try:
            for path in files:
                shutil.copyfile(path, Path(model.path) / path.name)
            model.flush()
            shutil.copytree(model.path, staging)
        finally:
            shutil.rmtree(model.path, ignore_errors=True)
        fsync_tree(staging)
        self._reached("staged")
        final = parent / version
        if final.exists():  # an unreadable folder: a copy torn before copies were staged
            shutil.rmtree(final)
        os.rename(staging, final)
        fsync_folder(parent)
        self._reached("placed")

    def _next_promoted_at(self, states: list[StageState]) -> datetime:
        """Now, or just after the newest promotion when the clock has not moved past it."""
        now = self._clock()
        newest = max((state.promoted_at for state in states if state.promoted_at), default=None)
        return now if newest is None or now > newest else newest + timedelta(microseconds=1)

    def _change(
        self,
        make_plan: Callable[[list[StageState]], list[Transition]],
        reason: str,
        numbers: dict[str, Any] | None,
        operation_id: str | None,
    ) -> list[Transition]:
        """Plan against the journal and commit every step in one write (see the class docstring)."""
        with self._writer() as journal:
            done = journal.operation(operation_id) if operation_id is not None else None
            if done is not None:  # a retry of a request that was applied: its answer again
                self._settle(journal)
                return done
            states = journal.states()
            plan = make_plan(states)
            if plan or operation_id is not None:
                journal = journal.applied(
                    plan, self._next_promoted_at(states), self._clock(), reason, dict(numbers or {}), operation_id
                )
                journal = self._commit(journal)
            self._settle(journal)
        return plan

    def promote(
        self, version: str, reason: str, numbers: dict[str, Any] | None = None, *, operation_id: str | None = None
    ) -> list[Transition]:
        """Make ``version`` the champion and archive the one it replaces; returns the steps taken
        (none when it already is the champion). ``numbers`` (metrics, gate checks) go with each event."""
        return self._change(lambda states: plan_promotion(states, version), reason, numbers, operation_id)

    def rollback(
        self,
        reason: str,
        numbers: dict[str, Any] | None = None,
        *,
        operation_id: str | None = None,
        expected_champion: str | None = None,
    ) -> list[Transition]:
        """Restore the previous champion and archive the current one; returns the steps taken.

        With ``expected_champion``, only when that version is the champion (none taken
        otherwise): a rollback retried after its answer was lost does not go back twice. The
        same holds for a repeated ``operation_id``. Raises `NoPreviousChampion` when there is
        nothing to go back to.
        """

        def plan(states: list[StageState]) -> list[Transition]:
            current = next((state.version for state in states if state.stage == CHAMPION), None)
            if expected_champion is not None and current != expected_champion:
                return []
            return plan_rollback(states)

        return self._change(plan, reason, numbers, operation_id)

    def withdraw(
        self, version: str, reason: str, numbers: dict[str, Any] | None = None, *, operation_id: str | None = None
    ) -> list[Transition]:
        """Undo ``version``'s promotion (see `plan_withdrawal`); nothing when it is not champion."""
        return self._change(lambda states: plan_withdrawal(states, version), reason, numbers, operation_id)


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _mirrored_labels(labels: dict[str, str], stage: ModelStage) -> dict[str, str]:
    """``labels`` with the stage labels as the journal has them."""
    labels = {key: value for key, value in labels.items() if key not in (PROMOTED_AT_LABEL, ROLLED_BACK_AT_LABEL)}
    labels[STAGE_LABEL] = stage.stage
    if stage.promoted_at:
        labels[PROMOTED_AT_LABEL] = stage.promoted_at
    if stage.rolled_back_at:
        labels[ROLLED_BACK_AT_LABEL] = stage.rolled_back_at
    return labels
