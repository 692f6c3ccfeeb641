"""The stage journal: one JSON document that is the registry's truth about stages.

A stage change that touches several models is one atomic replacement of this document, so
every reader sees the stages before the change or after it, never a mix: exactly one champion at
every instant, and a change killed at any point is either wholly done or not done at all.

The events a change reports go into the same document's outbox in the same write. They are
delivered to the event sink (the DuckDB history) afterwards and dropped from the outbox once
delivered, so a busy database delays the history but never holds a stage change hostage; each
event has an id, so delivering one twice records it once. Operation ids remember recent
requests, so a retried request (a rollback whose answer was lost) is not applied twice.

Pure functions of the document, plus `read_journal` / `write_journal` for the file.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sprout.durable_files import write_text_atomically

from .stages import CHALLENGER, CHAMPION, RegistryError, StageState, Transition

FORMAT = 1
REMEMBERED_OPERATIONS = 200  # retries come minutes apart, not hundreds of requests later


class JournalError(RegistryError):
    """The stage journal cannot be read: not JSON, or a format this code does not know."""


@dataclass(frozen=True)
class ModelStage:
    """One registered model's stage and how it got there."""

    stage: str = CHALLENGER
    promoted_at: str | None = None  # ISO time it last became champion
    rolled_back_at: str | None = None  # set when a rollback demoted it, cleared when promoted again
    history: tuple[dict[str, Any], ...] = ()

    def state(self, version: str) -> StageState:
        promoted = datetime.fromisoformat(self.promoted_at) if self.promoted_at else None
        return StageState(version, self.stage, promoted, self.rolled_back_at is not None)


@dataclass(frozen=True)
class Journal:
    models: dict[str, ModelStage] = field(default_factory=dict)
    outbox: tuple[dict[str, Any], ...] = ()  # events not yet delivered, oldest first
    operations: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # id -> steps taken
    revision: int = 0

    def states(self) -> list[StageState]:
        return [stage.state(version) for version, stage in self.models.items()]

    def champion(self) -> str | None:
        """The champion's version (a journal never holds two)."""
        return next((version for version, stage in self.models.items() if stage.stage == CHAMPION), None)

    # Changes: each returns a new journal.

    def with_events(self, events: list[dict[str, Any]]) -> Journal:
        return replace(self, outbox=self.outbox + tuple(events))

    def without_events(self, event_ids: set[str]) -> Journal:
        return replace(self, outbox=tuple(e for e in self.outbox if e["event_id"] not in event_ids))

    def registered(self, version: str, at: datetime, event: dict[str, Any]) -> Journal:
        """``version`` joins as a challenger (unchanged when it is there already)."""
        if version in self.models:
            return self
        history = ({"at": at.isoformat(), "to": CHALLENGER, "reason": "registered"},)
        models = {**self.models, version: ModelStage(history=history)}
        return replace(self, models=models).with_events([event])

    def applied(
        self,
        plan: list[Transition],
        promoted_at: datetime,
        now: datetime,
        reason: str,
        details: dict[str, Any],
        operation_id: str | None = None,
    ) -> Journal:
        """Every step of ``plan`` at once, its events in the outbox, the operation remembered."""
        models, events = dict(self.models), []
        for step in plan:
            at = promoted_at if step.to_stage == CHAMPION else now
            current = models[step.version]
            entry = {"at": at.isoformat(), "from": step.from_stage, "to": step.to_stage, "kind": step.kind,
                     "reason": reason}
            changed = replace(current, stage=step.to_stage, history=current.history + (entry,))
            if step.to_stage == CHAMPION:
                changed = replace(changed, promoted_at=at.isoformat(), rolled_back_at=None)
            elif step.kind == "rolled_back":
                changed = replace(changed, rolled_back_at=at.isoformat())
            models[step.version] = changed
            events.append(new_event(step.kind, step.version, at, from_stage=step.from_stage,
                                    to_stage=step.to_stage, reason=reason, details=details))
        operations = dict(self.operations)
        if operation_id is not None:
            operations[operation_id] = [
                {"version": s.version, "from_stage": s.from_stage, "to_stage": s.to_stage, "kind": s.kind}
                for s in plan
            ]
            operations = dict(list(operations.items())[-REMEMBERED_OPERATIONS:])
        champions = [version for version, stage in models.items() if stage.stage == CHAMPION]
        if len(champions) > 1:
            raise RegistryError(f"a plan would leave {len(champions)} champions: {', '.join(champions)}")
        return replace(self, models=models, operations=operations).with_events(events)

    def operation(self, operation_id: str) -> list[Transition] | None:
        """The steps an earlier request with this id took; None when it is not remembered."""
        steps = self.operations.get(operation_id)
        return None if steps is None else [Transition(**step) for step in steps]


def new_event(kind: str, version: str | None, at: datetime, **fields: Any) -> dict[str, Any]:
    """An outbox event: what `Store.record_model_events` takes, with a fresh id."""
    return {"event_id": str(uuid.uuid4()), "kind": kind, "model_version": version, "at": at.isoformat(), **fields}


def to_document(journal: Journal) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "revision": journal.revision,
        "models": {
            version: {"stage": s.stage, "promoted_at": s.promoted_at, "rolled_back_at": s.rolled_back_at,
                      "history": list(s.history)}
            for version, s in sorted(journal.models.items())
        },
        "outbox": list(journal.outbox),
        "operations": journal.operations,
    }


def from_document(document: dict[str, Any]) -> Journal:
    if document.get("format") != FORMAT:
        raise JournalError(f"stage journal format {document.get('format')!r} is not {FORMAT}")
    models = {
        version: ModelStage(entry["stage"], entry.get("promoted_at"), entry.get("rolled_back_at"),
                            tuple(entry.get("history", ())))
        for version, entry in document["models"].items()
    }
    return Journal(models, tuple(document.get("outbox", ())), dict(document.get("operations", {})),
                   int(document.get("revision", 0)))


def read_journal(path: Path) -> Journal | None:
    """The journal at ``path``; None when there is none yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return from_document(json.loads(text))
    except (ValueError, KeyError, TypeError) as error:
        raise JournalError(f"{path} is not a stage journal: {error}") from error


def write_journal(path: Path, journal: Journal) -> Journal:
    """Replace the journal in one rename (data and folder synced first); returns what was written."""
    written = replace(journal, revision=journal.revision + 1)
    write_text_atomically(path, json.dumps(to_document(written), default=float, indent=1))
    return written
