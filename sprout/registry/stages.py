"""Model stages and the plans that move models between them: pure functions, no I/O.

A registered model starts as a ``challenger``. Promotion makes it the ``champion`` and archives
the one it replaces; a rollback restores the previous champion and archives the current one.
A plan is an ordered list of `Transition`s: the registry applies them in that order, which is
what keeps a champion visible throughout (the new champion always comes first).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

CHALLENGER = "challenger"
CHAMPION = "champion"
ARCHIVED = "archived"
STAGES = (CHALLENGER, CHAMPION, ARCHIVED)


class RegistryError(Exception):
    """Base class for registry errors."""


class UnknownVersion(RegistryError):
    def __init__(self, version: str) -> None:
        super().__init__(f"no registered model with version {version!r}")
        self.version = version


class NoPreviousChampion(RegistryError):
    """A rollback found no earlier champion to restore."""


@dataclass(frozen=True)
class StageState:
    """What the plans need to know about one registered model."""

    version: str
    stage: str
    promoted_at: datetime | None = None  # when it last became champion
    rolled_back: bool = False  # demoted by a rollback since it was last promoted


@dataclass(frozen=True)
class Transition:
    version: str
    from_stage: str
    to_stage: str
    kind: str  # the model event: 'promoted', 'archived' or 'rolled_back'


def _newest_first(states: Iterable[StageState]) -> list[StageState]:
    """Most recently promoted first; never-promoted last."""
    return sorted(
        states, key=lambda state: (state.promoted_at is not None, state.promoted_at, state.version), reverse=True
    )


def champions(states: Iterable[StageState]) -> list[StageState]:
    """Every model labelled champion, the most recently promoted first.

    More than one exists only for a moment during a stage change (or after a crash in one).
    """
    return _newest_first(state for state in states if state.stage == CHAMPION)


def current_champion(states: Iterable[StageState]) -> StageState | None:
    """The champion that serves: the most recently promoted of those labelled champion."""
    found = champions(states)
    return found[0] if found else None


def _find(states: list[StageState], version: str) -> StageState:
    for state in states:
        if state.version == version:
            return state
    raise UnknownVersion(version)


def plan_promotion(states: Iterable[StageState], version: str) -> list[Transition]:
    """Make ``version`` the champion, then archive every other champion.

    Empty when ``version`` already is the only champion.
    """
    states = list(states)
    target = _find(states, version)
    current = champions(states)
    others = [state for state in current if state.version != version]
    plan = []
    if not (current and current[0].version == version):
        plan.append(Transition(version, target.stage, CHAMPION, "promoted"))
    plan.extend(Transition(state.version, CHAMPION, ARCHIVED, "archived") for state in others)
    return plan


def previous_champion(states: Iterable[StageState]) -> StageState | None:
    """The archived model that was champion most recently before the current one, and was
    not itself rolled back; None when there is none."""
    states = list(states)
    current = current_champion(states)
    candidates = [
        state
        for state in states
        if state.stage == ARCHIVED
        and state.promoted_at is not None
        and not state.rolled_back
        and (current is None or current.promoted_at is None or state.promoted_at < current.promoted_at)
    ]
    found = _newest_first(candidates)
    return found[0] if found else None


def plan_rollback(states: Iterable[StageState]) -> list[Transition]:
    """Restore the previous champion, then archive the current one (and any stale champion).

    Rollbacks stack: a rolled-back model is never restored by a later rollback, so repeated
    rollbacks walk back through the champions in turn.
    """
    states = list(states)
    current = champions(states)
    if not current:
        raise NoPreviousChampion("there is no champion to roll back")
    previous = previous_champion(states)
    if previous is None:
        raise NoPreviousChampion(f"champion {current[0].version} has no earlier champion to roll back to")
    plan = [
        Transition(previous.version, ARCHIVED, CHAMPION, "promoted"),
        Transition(current[0].version, CHAMPION, ARCHIVED, "rolled_back"),
    ]
    plan.extend(Transition(state.version, CHAMPION, ARCHIVED, "archived") for state in current[1:])
    return plan


def plan_withdrawal(states: Iterable[StageState], version: str) -> list[Transition]:
    """Undo ``version``'s promotion: restore the champion it replaced when there is one,
    otherwise archive it and leave no champion (a first promotion that failed half-way)."""
    states = list(states)
    target = _find(states, version)
    if target.stage != CHAMPION:
        return []
    previous = previous_champion(states)
    if previous is not None and current_champion(states) == target:
        return plan_rollback(states)
    return [Transition(version, CHAMPION, ARCHIVED, "rolled_back")]
