"""An evaluation result as the tables people read: Prefect artifacts, W&B summaries, the CLI.

Input is the dict `evaluate_artifact` returns. NaN (a metric that does not apply, such as a
rating error for a ranking baseline) becomes ``None`` so every output is valid JSON.
"""

from __future__ import annotations

import math
from typing import Any

from sprout.evaluation.evaluator import METRIC_NAMES
from sprout.json_values import json_ready

REPORTED = METRIC_NAMES + ("calibration@100", "finite", "forward_latency_ms")


def readable(value: Any, digits: int = 4) -> Any:
    """A number as people read it: ``digits`` significant digits (JSON elsewhere keeps them all)."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{digits}g}")
    return value


def comparison_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per scored method: challenger, champion (when scored), then each baseline; numbers
    rounded to 4 significant digits, NaN as None."""
    methods = [(f"challenger {result['challenger_version']}", result["challenger"])]
    if result.get("champion") is not None:
        methods.append((f"champion {result['champion_version']}", result["champion"]))
    methods.extend(result["baselines"].items())
    return [
        {"method": name, **{metric: readable(json_ready(metrics.get(metric, math.nan))) for metric in REPORTED}}
        for name, metrics in methods
    ]


def decision_markdown(result: dict[str, Any]) -> str:
    decision = result["decision"]
    verdict = "**promote**" if decision["promote"] else "**keep the champion**"
    if result["champion_version"] is None:
        against = "There is no champion yet: only the absolute checks apply."
    else:
        against = f"Against champion `{result['champion_version']}`, {result['champion_status']}."
    lines = [
        f"## Gate: {verdict}",
        f"Challenger `{result['challenger_version']}` on the {result['split']} users of snapshot "
        f"`{result['snapshot_id']}`. {against}",
        "",
        "| check | value | needs | passed |",
        "|---|---|---|---|",
    ]
    for check in decision["checks"]:
        lines.append(f"| {check['name']} | {check['value']:.4g} | {check['direction']} {check['threshold']:.4g} | "
                     f"{'yes' if check['passed'] else 'no'} |")
    margin = result.get("ease_margin")
    if margin is not None and math.isfinite(margin):
        lines += ["", f"NDCG@100 margin over EASE: {margin:+.4f}"]
    lines += ["", *(f"- {reason}" for reason in decision["reasons"])]
    return "\n".join(lines)


def wandb_summary(result: dict[str, Any]) -> dict[str, Any]:
    """Flat ``eval/<method>/<metric>`` keys plus the decision, for the training run's summary."""
    summary: dict[str, Any] = {
        "eval/decision": "promote" if result["decision"]["promote"] else "reject",
        "eval/reasons": "; ".join(result["decision"]["reasons"]),
        "eval/champion_version": result["champion_version"] or "",
        "eval/snapshot_id": result["snapshot_id"],
    }
    if json_ready(result.get("ease_margin")) is not None:
        summary["eval/ease_margin"] = result["ease_margin"]
    methods = {"challenger": result["challenger"], **result["baselines"]}
    if result.get("champion") is not None:
        methods["champion"] = result["champion"]
    for name, metrics in methods.items():
        for metric in REPORTED:
            value = json_ready(metrics.get(metric, math.nan))
            if value is not None:
                summary[f"eval/{name}/{metric}"] = value
    return summary
