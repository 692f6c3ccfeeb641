"""One model health check: the champion on fresh data beside popularity and EASE, drift, the live
service, and whether it is degraded.

The champion is judged on the users who added shows since its snapshot (`fresh_data`), beside
popularity and EASE fitted on the same users it was fitted on (its own snapshot), and beside its
own figures at promotion. It is *degraded* when, on at least ``min_fresh_users`` such users,
its fresh NDCG@100 falls below EASE's by more than ``ease_tolerance``, or its NDCG as a share
of EASE's on the same users falls more than ``max_ndcg_drop`` below that share at promotion. The store is read in one read-only transaction; writing
the check is the caller's (one row, `sprout.store.health_checks`).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sprout.config import Settings
from sprout.dataset.snapshot import newest_entry_day
from sprout.dataset.snapshot_format import SnapshotError, load_snapshot
from sprout.evaluation.baselines import EaseEvaluator, PopularityEvaluator
from sprout.evaluation.held_out import held_out_users
from sprout.evaluation.model_scores import ModelEvaluator
from sprout.evaluation.promotion import fitted_users
from sprout.model.artifact import read_model_artifact
from sprout.store import Store
from sprout.store.health_checks import HealthCheckRow
from sprout.workspace import Workspace

from .drift import Histograms, current_histograms, drift_figures, outside_corpus
from .fresh_data import fresh_users
from .service import ServiceUnreachable, scrape, service_figures, totals

FRESH_METRICS = ("ndcg@100", "recall@20", "recall@50")
PROMOTION_METRICS = (*FRESH_METRICS, "ease_ndcg@100", "popularity_ndcg@100")
STORE_WAIT_S = 60.0
PREVIOUS_CHECKS = 50  # of the same champion: the trend shown beside a new check
ANNOUNCE_EVERY = timedelta(days=1)


class HealthCheckError(RuntimeError):
    """A check that cannot be made (no snapshot to compare with, say), with what to do."""


@dataclass(frozen=True)
class HealthRules:
    """When a champion counts as degraded (see the module docstring)."""

    max_ndcg_drop: float = 0.1
    ease_tolerance: float = 0.0
    min_fresh_users: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthRules:
        return cls(settings.monitor_max_ndcg_drop, settings.monitor_ease_tolerance, settings.monitor_min_fresh_users)


@dataclass(frozen=True)
class Champion:
    """The model being checked: its version, artifact folder and figures at promotion."""

    version: str
    folder: Path
    at_promotion: dict[str, float] = field(default_factory=dict)


def judge(figures: dict[str, Any], rules: HealthRules) -> tuple[bool, list[str]]:
    """(degraded, reasons) of a check's figures: every rule's verdict in words.

    Fresh-data NDCG measures another task than the test users' at promotion (what people added
    next, not a random fifth of their lists), so the champion's standing is compared as its share
    of EASE's NDCG on the same users, then and now."""
    fresh = figures.get("fresh") or {}
    users = int(figures.get("counts", {}).get("fresh_users", 0))
    if users < rules.min_fresh_users or "model" not in fresh:
        return False, [f"{users} users added shows since the snapshot (< {rules.min_fresh_users}): too few to judge"]
    model, ease = fresh["model"]["ndcg@100"], fresh.get("ease", {}).get("ndcg@100", math.nan)
    promoted = figures.get("at_promotion", {})
    reasons, degraded = [], False
    if math.isfinite(ease):
        below = model < ease - rules.ease_tolerance
        degraded |= below
        reasons.append(f"fresh NDCG@100 {model:.4f} {'below' if below else 'at or above'} EASE's {ease:.4f}"
                       + (f" (tolerance {rules.ease_tolerance})" if rules.ease_tolerance else ""))
    then = promoted.get("ndcg@100", math.nan) / promoted.get("ease_ndcg@100", math.nan)
    now = model / ease if ease else math.nan
    if math.isfinite(then) and math.isfinite(now):
        dropped = then - now > rules.max_ndcg_drop
        degraded |= dropped
        reasons.append(f"NDCG@100 {now:.0%} of EASE's now, {then:.0%} at promotion "
                       f"({'more' if dropped else 'not more'} than {rules.max_ndcg_drop:.0%} lower)")
    return degraded, reasons


@dataclass(frozen=True)
class HealthCheck:
    check_id: str
    checked_at: datetime
    model_version: str
    snapshot_id: str
    degraded: bool
    reasons: list[str]
    figures: dict[str, Any]

    def row(self) -> HealthCheckRow:
        return HealthCheckRow(self.check_id, self.checked_at, self.model_version, self.snapshot_id, self.degraded,
                              {**self.figures, "degraded": self.degraded, "reasons": self.reasons})


def _ranking(metrics: dict[str, float], names: tuple[str, ...] = FRESH_METRICS) -> dict[str, float]:
    return {name: float(metrics[name]) for name in names if name in metrics}


def check_model_health(
    db_path: Path, home: Path, champion: Champion, *, rules: HealthRules | None = None,
    service_url: str | None = None, previous: list[HealthCheckRow] | None = None,
    max_users: int = 2000, seed: int = 0, now: datetime | None = None,
    access: Callable[[], AbstractContextManager] = nullcontext,
) -> HealthCheck:
    """Check ``champion`` against the store at ``db_path`` and its snapshot under ``home``.

    ``previous`` (newest first) supplies the last scrape of the service for rates over the time
    between checks. ``access`` is held around the store's reads only (the scoring runs without
    it): a cross-process slot such as the Prefect DuckDB limit. Raises `HealthCheckError` when the
    champion's snapshot is not in the workspace.
    """
    rules = rules or HealthRules()
    now = now or datetime.now(UTC)
    model, document = read_model_artifact(champion.folder)
    snapshot_id = str(document.get("dataset", {}).get("snapshot_id", ""))
    try:
        snapshot = load_snapshot(Workspace(home).snapshot(snapshot_id))
    except (FileNotFoundError, SnapshotError) as error:
        raise HealthCheckError(
            f"model {champion.version} was trained on snapshot {snapshot_id!r}, which is not readable under "
            f"{Workspace(home).snapshots} ({error}): rebuild it with `sprout dataset build --date "
            f"{document.get('dataset', {}).get('snapshot_date', 'DATE')}` on this store"
        ) from error
    snapshot_date = date.fromisoformat(snapshot.manifest.snapshot_date)
    fit_on = fitted_users(snapshot, document)
    with access(), Store.open(db_path, read_only=True, wait_s=STORE_WAIT_S) as store, store.transaction() as connection:
        fresh = fresh_users(connection, snapshot, fit_on, max_users=max_users, seed=seed)
        current = current_histograms(connection, snapshot.corpus, snapshot.manifest.config)
        outside = outside_corpus(connection, snapshot.corpus, snapshot_date)
        newest = newest_entry_day(connection)  # how far the data has moved on (the simulator's clock too)

    figures: dict[str, Any] = {
        "snapshot_date": snapshot_date.isoformat(),
        "newest_entry_day": newest.isoformat(),
        "days_since_snapshot": (newest - snapshot_date).days,
        "counts": fresh.figures(),
        "at_promotion": _ranking(champion.at_promotion, PROMOTION_METRICS),
        "fresh": {},
        "drift": {**drift_figures(Histograms.of_splits(snapshot.splits.values()), current), **outside},
    }
    if fresh.users is not None:
        validation = held_out_users(snapshot, "validation")
        evaluated = ModelEvaluator(model, latency_runs=1).evaluate(fresh.users)
        figures["fresh"] = {
            "model": {**_ranking(evaluated), "rating_mae": float(evaluated["rating_mae"]),
                      "calibration@100": float(evaluated.get("calibration@100", math.nan))},
            "popularity": _ranking(PopularityEvaluator().evaluate(fresh.users)),
            "ease": _ranking(EaseEvaluator.tuned_then_fitted(snapshot.split("train"), validation, fit_on)
                             .evaluate(fresh.users)),
        }
    if service_url:
        figures["service"] = _service(service_url, now, previous)
    degraded, reasons = judge(figures, rules)
    return HealthCheck(str(uuid.uuid4()), now, champion.version, snapshot.snapshot_id, degraded, reasons, figures)


def _service(url: str, now: datetime, previous: list[HealthCheckRow] | None) -> dict[str, Any]:
    """The service's figures since the last check that reached it, and this scrape's totals."""
    try:
        scraped = totals(scrape(url))
    except ServiceUnreachable as error:
        return {"url": url, "error": str(error)}
    last = next((row.figures["service"]["totals"] for row in previous or []
                 if row.figures.get("service", {}).get("url") == url and "totals" in row.figures["service"]), None)
    return {"url": url, **service_figures(scraped, now, last), "totals": {**scraped, "at": now.isoformat()}}


def check_and_record(
    settings: Settings, champion: Champion, *, now: datetime | None = None,
    access: Callable[[], AbstractContextManager] = nullcontext,
) -> tuple[HealthCheck, list[HealthCheckRow]]:
    """Check ``champion`` with the rules and service of ``settings``, record the check in the
    store, and return it with the champion's earlier checks (newest first)."""
    with access(), Store.open(settings.db_path, read_only=True, wait_s=STORE_WAIT_S) as store:
        previous = store.health_checks(limit=PREVIOUS_CHECKS, model_version=champion.version)
    check = check_model_health(
        settings.db_path, settings.home, champion, rules=HealthRules.from_settings(settings),
        service_url=settings.monitor_service_url, previous=previous, max_users=settings.monitor_max_users, now=now,
        access=access,
    )
    with access(), Store.open(settings.db_path, wait_s=STORE_WAIT_S) as store:
        store.record_health_check(check.row())
    return check, previous


def should_announce(check: HealthCheck, previous: list[HealthCheckRow], every: timedelta = ANNOUNCE_EVERY) -> bool:
    """Whether a degraded check announces it (and so starts a retrain): the champion's first
    degraded check, or the first one ``every`` after its last degraded check, so a champion that
    stays degraded does not start a retrain on every crawl."""
    if not check.degraded:
        return False
    last = next((row.checked_at for row in previous if row.degraded), None)
    return last is None or check.checked_at - last >= every
