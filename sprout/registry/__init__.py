"""Model stages and the plans that move models between them.

The BentoML-backed registry that applies these plans lives in `bentos.registry`; this package
imports no BentoML, so flows and tests can reason about stages without it.
"""

from .stages import (
    ARCHIVED,
    CHALLENGER,
    CHAMPION,
    STAGES,
    NoPreviousChampion,
    RegistryError,
    StageState,
    Transition,
    UnknownVersion,
    current_champion,
    plan_promotion,
    plan_rollback,
    plan_withdrawal,
    previous_champion,
)

__all__ = [
    "ARCHIVED",
    "CHALLENGER",
    "CHAMPION",
    "STAGES",
    "NoPreviousChampion",
    "RegistryError",
    "StageState",
    "Transition",
    "UnknownVersion",
    "current_champion",
    "plan_promotion",
    "plan_rollback",
    "plan_withdrawal",
    "previous_champion",
]
