"""The live service's figures, read from its Prometheus ``/metrics``.

Counters are cumulative since the service's workers started. One scrape gives totals and
latency percentiles since then; with the previous check's scrape (``previous``, from the same
service: no counter went down) the request rate and the percentiles cover the time between the
two checks instead. Health checks and ``/metrics`` itself are not requests for this purpose.
"""

from __future__ import annotations

from datetime import datetime

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "bentoml_service_request"  # counter: endpoint, http_response_code
DURATIONS = "bentoml_service_request_duration_seconds"  # histogram: endpoint, le
SHED = "sprout_requests_shed_total"  # counter: lane
NOT_REQUESTS = ("/metrics", "/livez", "/readyz", "/healthz")


class ServiceUnreachable(RuntimeError):
    """The service's /metrics could not be read."""


def scrape(url: str, timeout_s: float = 10.0) -> str:
    try:
        response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=timeout_s)
        response.raise_for_status()
    except httpx.HTTPError as error:
        raise ServiceUnreachable(f"{url}/metrics did not answer: {error.__class__.__name__}: {error}") from error
    return response.text


def totals(text: str) -> dict[str, object]:
    """Cumulative counts from one scrape: requests, 5xx answers, shed requests and the request
    duration histogram (``le`` upper bounds and cumulative counts), summed over endpoints."""
    requests = errors = shed = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            endpoint = sample.labels.get("endpoint", "")
            if endpoint in NOT_REQUESTS:
                continue
            if sample.name == REQUESTS + "_total":
                requests += sample.value
                if str(sample.labels.get("http_response_code", "")).startswith("5"):
                    errors += sample.value
            elif sample.name == DURATIONS + "_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            elif sample.name == SHED:
                shed += sample.value
    bounds = sorted(buckets)
    return {"requests": requests, "errors": errors, "shed": shed,
            "le": bounds, "cumulative": [buckets[b] for b in bounds]}


def quantile(q: float, bounds: list[float], cumulative: list[float]) -> float | None:
    """The ``q`` quantile of a Prometheus histogram (linear within a bucket, as histogram_quantile
    does; the +Inf bucket answers the highest finite bound). None when it holds nothing."""
    counts = np.asarray(cumulative, np.float64)
    if not len(counts) or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    index = int(np.searchsorted(counts, rank, side="left"))
    finite = [b for b in bounds if np.isfinite(b)]
    if index >= len(bounds) or not np.isfinite(bounds[index]):
        return finite[-1] if finite else None
    lower_bound = bounds[index - 1] if index > 0 else 0.0
    lower_count = counts[index - 1] if index > 0 else 0.0
    width = counts[index] - lower_count
    return float(lower_bound + (bounds[index] - lower_bound) * ((rank - lower_count) / width if width else 1.0))


def service_figures(now: dict[str, object], at: datetime, previous: dict[str, object] | None = None) -> dict[str, object]:
    """Rate, errors, shed and p50/p99 (milliseconds) from a scrape's totals ``now`` taken at
    ``at``, over the time since ``previous`` (totals with their ``at``) when it is comparable."""
    window = "since the service started"
    base = {"requests": 0.0, "errors": 0.0, "shed": 0.0, "cumulative": [0.0] * len(now["cumulative"])}
    rate = None
    if previous and previous.get("le") == now["le"] and all(
        float(now[k]) >= float(previous[k]) for k in ("requests", "errors", "shed")
    ) and all(a >= b for a, b in zip(now["cumulative"], previous["cumulative"])):
        base = previous
        seconds = (at - datetime.fromisoformat(str(previous["at"]))).total_seconds()
        window = f"in the {seconds / 3600:.1f} h since the last check"
        rate = (float(now["requests"]) - float(previous["requests"])) / seconds if seconds > 0 else None
    cumulative = [a - b for a, b in zip(now["cumulative"], base["cumulative"])]
    requests = float(now["requests"]) - float(base["requests"])
    p50, p99 = (quantile(q, now["le"], cumulative) for q in (0.5, 0.99))
    return {
        "window": window,
        "requests": requests,
        "requests_per_s": rate,
        "errors": float(now["errors"]) - float(base["errors"]),
        "error_share": (float(now["errors"]) - float(base["errors"])) / requests if requests else 0.0,
        "shed": float(now["shed"]) - float(base["shed"]),
        "p50_ms": None if p50 is None else p50 * 1e3,
        "p99_ms": None if p99 is None else p99 * 1e3,
    }
