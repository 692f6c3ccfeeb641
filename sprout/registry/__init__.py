"""Model stages, the plans that move models between them, the stage journal that applies a plan
all at once, and the promotion steps (evaluate, register, verify) written against the `Registry`
protocol.

The BentoML-backed registry lives in `bentos.registry`; this package imports no BentoML, so
flows and tests can reason about stages without it.
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
