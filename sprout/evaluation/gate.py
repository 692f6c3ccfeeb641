"""The promotion gate: a pure decision over metric dicts, every number kept (docs/design.md §7).

A check passes only on a finite value that meets its threshold, so a NaN metric (a broken model,
a missing number) can never let a model through. Without a champion only the absolute checks
apply: finite outputs, latency, beating the popularity baseline, reaching EASE's NDCG@100
(within ``ease_tolerance``) and predicting ratings at least as well as the best rating baseline
(within ``rating_baseline_tolerance`` plus ``rating_noise_sigmas`` standard errors of the paired
per-user difference, ``rating_mae_paired_se`` in the challenger's metrics: a gap the test users
cannot resolve fails no model) on the same test users.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

RANKING_METRIC = "ndcg@100"
RATING_METRIC = "rating_mae"
RATING_NOISE_METRIC = "rating_mae_paired_se"  # SE of the challenger's MAE minus the best rating baseline's
LATENCY_METRIC = "forward_latency_ms"
FINITE_METRIC = "finite"
POPULARITY = "popularity"
EASE = "ease"


class GateRules(BaseModel):
    """What a challenger must show to be promoted."""

    model_config = ConfigDict(frozen=True)

    ndcg_margin: float = 0.0  # challenger NDCG@100 ≥ champion's + margin
    max_mae_regression: float = 0.05  # challenger MAE ≤ champion's + this (1..10 scale)
    min_margin_over_popularity: float = 0.0  # challenger NDCG@100 ≥ popularity's + this
    ease_tolerance: float = 0.0  # challenger NDCG@100 ≥ EASE's − this (EASE: the closed-form bar)
    rating_baseline_tolerance: float = 0.0  # challenger MAE ≤ the best rating baseline's MAE + this
    # … + this many standard errors of the paired per-user MAE difference (what the test users
    # cannot tell apart; 0: the plain comparison)
    rating_noise_sigmas: float = 2.0
    max_forward_latency_ms: float = 50.0
    require_finite: bool = True


def best_rating_baseline(baselines: dict[str, dict[str, float]]) -> str | None:
    """The baseline with the least finite rating MAE, or None when none has one."""
    maes = {name: _number(metrics, RATING_METRIC) for name, metrics in baselines.items()}
    maes = {name: mae for name, mae in maes.items() if math.isfinite(mae)}
    return min(maes, key=maes.__getitem__) if maes else None


class Check(BaseModel):
    """One rule applied: the challenger's value against the threshold it had to meet."""

    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    value: float
    threshold: float
    direction: Literal[">=", "<="]


class GateDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    promote: bool
    reasons: list[str]  # one line per failed check, or why it passed
    checks: list[Check]
    rules: GateRules
    challenger: dict[str, float]
    champion: dict[str, float] | None
    baselines: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (NaN stays a float; serialise with allow_nan or store as DOUBLE)."""
        return self.model_dump(mode="python")


def _number(metrics: dict[str, float] | None, name: str) -> float:
    value = (metrics or {}).get(name, math.nan)
    return float(value) if value is not None else math.nan


def _check(name: str, value: float, threshold: float, direction: Literal[">=", "<="]) -> Check:
    meets = value >= threshold if direction == ">=" else value <= threshold
    passed = math.isfinite(value) and math.isfinite(threshold) and bool(meets)
    return Check(name=name, passed=passed, value=value, threshold=threshold, direction=direction)


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    baselines: dict[str, dict[str, float]],
    rules: GateRules | None = None,
) -> GateDecision:
    """Promote the challenger only if every applicable check passes.

    challenger/champion: metric dicts from `ModelEvaluator`; baselines: by name, must contain
    ``popularity`` and ``ease`` (missing → its check fails rather than being skipped).
    """
    rules = rules or GateRules()
    challenger_ndcg = _number(challenger, RANKING_METRIC)
    checks = []
    if rules.require_finite:
        checks.append(_check("finite_outputs", _number(challenger, FINITE_METRIC), 1.0, ">="))
    checks.append(
        _check("forward_latency_ms", _number(challenger, LATENCY_METRIC), rules.max_forward_latency_ms, "<=")
    )
    checks.append(
        _check(
            "ndcg@100_over_popularity",
            challenger_ndcg,
            _number(baselines.get(POPULARITY), RANKING_METRIC) + rules.min_margin_over_popularity,
            ">=",
        )
    )
    checks.append(
        _check(
            "ndcg@100_vs_ease",
            challenger_ndcg,
            _number(baselines.get(EASE), RANKING_METRIC) - rules.ease_tolerance,
            ">=",
        )
    )
    best = best_rating_baseline(baselines)
    if best is not None:  # only a data set without any rated held-out entry has none
        noise = _number(challenger, RATING_NOISE_METRIC)
        allowance = rules.rating_noise_sigmas * noise if math.isfinite(noise) else 0.0
        checks.append(
            _check(
                f"rating_mae_vs_{best}",
                _number(challenger, RATING_METRIC),
                _number(baselines[best], RATING_METRIC) + rules.rating_baseline_tolerance + allowance,
                "<=",
            )
        )
    if champion is not None:
        checks.append(
            _check("ndcg@100_vs_champion", challenger_ndcg, _number(champion, RANKING_METRIC) + rules.ndcg_margin, ">=")
        )
        checks.append(
            _check(
                "rating_mae_vs_champion",
                _number(challenger, RATING_METRIC),
                _number(champion, RATING_METRIC) + rules.max_mae_regression,
                "<=",
            )
        )
    failed = [c for c in checks if not c.passed]
    reasons = [f"{c.name}: {c.value:.6g} is not {c.direction} {c.threshold:.6g}" for c in failed]
    if not failed:
        reasons = ["all checks passed" + ("" if champion is not None else " (no champion: absolute checks only)")]
    return GateDecision(
        promote=not failed,
        reasons=reasons,
        checks=checks,
        rules=rules,
        challenger={k: float(v) for k, v in challenger.items()},
        champion=None if champion is None else {k: float(v) for k, v in champion.items()},
        baselines={name: {k: float(v) for k, v in m.items()} for name, m in baselines.items()},
    )
