"""A check's figures as one flat row, and the rows of several checks as a trend table (for the
Prefect artifact, the CLI and the W&B run)."""

from __future__ import annotations

from typing import Any

from sprout.store.health_checks import HealthCheckRow

# (column, path into a check's figures)
HEADLINE = (
    ("fresh_users", ("counts", "fresh_users")),
    ("fresh_ndcg@100", ("fresh", "model", "ndcg@100")),
    ("ease_ndcg@100", ("fresh", "ease", "ndcg@100")),
    ("popularity_ndcg@100", ("fresh", "popularity", "ndcg@100")),
    ("promotion_ndcg@100", ("at_promotion", "ndcg@100")),
    ("fresh_recall@20", ("fresh", "model", "recall@20")),
    ("ease_recall@20", ("fresh", "ease", "recall@20")),
    ("popularity_recall@20", ("fresh", "popularity", "recall@20")),
    ("fresh_rating_mae", ("fresh", "model", "rating_mae")),
    ("outside_corpus_share", ("drift", "outside_corpus_share")),
    ("profile_size_psi", ("drift", "profile_size_psi")),
    ("rating_psi", ("drift", "rating_psi")),
    ("withdrawn_share", ("counts", "withdrawn_share")),
    ("service_requests_per_s", ("service", "requests_per_s")),
    ("service_p99_ms", ("service", "p99_ms")),
    ("service_error_share", ("service", "error_share")),
    ("service_shed", ("service", "shed")),
)


def _at(figures: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(figures, dict) or key not in figures:
            return None
        figures = figures[key]
    return figures


def headline(figures: dict[str, Any]) -> dict[str, float | None]:
    """The numbers of one check that a dashboard plots, flat (None where a check has none)."""
    return {name: _at(figures, path) for name, path in HEADLINE}


def trend_rows(checks: list[HealthCheckRow]) -> list[dict[str, Any]]:
    """One row per check, oldest first, rounded for reading."""
    rows = []
    for check in sorted(checks, key=lambda c: c.checked_at):
        numbers = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in headline(check.figures).items()}
        rows.append({"checked_at": check.checked_at.isoformat(timespec="seconds"), "model": check.model_version,
                     "days_since_snapshot": check.figures.get("days_since_snapshot"), **numbers,
                     "degraded": check.degraded})
    return rows
