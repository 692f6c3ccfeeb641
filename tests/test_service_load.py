"""The service past its bounds: bursts of concurrent requests beyond the queue bound are answered
503 with Retry-After (never another 5xx, never a hang) while the health checks answer, everything
is served normally afterwards, and /metrics shows what happened."""

from __future__ import annotations

import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bentos.local_server import LocalServer
from service_helpers import SERVER_ENV, build_model_store, profile_of

MAX_QUEUE = 3  # POST requests one worker holds at once
BURST = 48


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_model_store(tmp_path_factory.mktemp("load"), n_models=1)


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    bounds = {"SPROUT_SERVE_MAX_QUEUE": str(MAX_QUEUE), "SPROUT_SERVE_MAX_WAITING_EXPLANATIONS": "0"}
    with LocalServer(
        store.store_dir, tmp_path_factory.mktemp("logs") / "serve.log", extra_env={**SERVER_ENV, **bounds}
    ) as running:
        yield running


def burst(url: str, path: str, bodies: list[dict]) -> list[httpx.Response]:
    """Every body posted at the same instant, one connection each."""
    start = threading.Barrier(len(bodies))

    def post(body: dict) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=60) as http:
            start.wait()
            return http.post(path, json=body)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(post, bodies))


def shed_until_refused(url: str, path: str, bodies: list[dict], attempts: int = 5) -> Counter:
    """Bursts until one has a 503 (how many arrive together is up to the scheduler); every answer checked."""
    statuses: Counter = Counter()
    for _ in range(attempts):
        for response in burst(url, path, bodies):
            statuses[response.status_code] += 1
            assert response.status_code in (200, 503), response.text
            if response.status_code == 503:
                assert int(response.headers["retry-after"]) >= 1
                assert "busy" in response.json()["error"]
            else:
                assert response.json()["recommendations"]
        if statuses[503]:
            return statuses
    return statuses


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of /metrics (labels given must match; others may be present)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(\{{[^}}]*\}})? (\S+)", line)
        if match and all(f'{k}="{v}"' in (match[1] or "") for k, v in labels.items()):
            return float(match[2])
    raise AssertionError(f"{name} {labels} is not in /metrics")


def test_a_burst_past_the_bound_is_shed_with_retry_after_while_health_answers(server, store):
    bodies = [{"profile": profile_of(store.corpus, 40, start=i % 30), "top_k": 50} for i in range(BURST)]
    health: list[int] = []
    done = threading.Event()

    def watch_health() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not done.is_set():
                health.append(http.get("/livez").status_code)

    watcher = threading.Thread(target=watch_health)
    watcher.start()
    try:
        statuses = shed_until_refused(server.url, "/recommend", bodies)
    finally:
        done.set()
        watcher.join()
    assert statuses[503] >= 1 and statuses[200] >= 1, statuses
    assert health and set(health) == {200}  # the health check never waited behind the burst
    with httpx.Client(base_url=server.url, timeout=60) as http:  # after the burst, all is normal
        for body in bodies[:10]:
            response = http.post("/recommend", json=body)
            assert response.status_code == 200 and len(response.json()["recommendations"]) == 50
        assert http.get("/readyz").status_code == 200
        text = http.get("/metrics").text
    shed = metric(text, "sprout_requests_shed_total", lane="gate")
    assert shed >= statuses[503]  # every refusal was counted


def test_explanations_beyond_their_bound_are_shed(server, store):
    bodies = [{"profile": profile_of(store.corpus, 60), "top_k": 20} for _ in range(MAX_QUEUE)]
    for _ in range(5):
        responses = burst(server.url, "/explain", bodies)
        assert {r.status_code for r in responses} <= {200, 503}
        if any(r.status_code == 503 for r in responses):
            break
    refused = [r for r in responses if r.status_code == 503]
    assert refused and all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert any(r.status_code == 200 and r.json()["most_impactful"] for r in responses)
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert metric(text, "sprout_requests_shed_total", lane="explanation") >= len(refused)
    assert metric(text, "sprout_explanations_in_flight") == 0  # none left behind


def test_metrics_show_batches_waits_and_the_model(server, store):
    from sprout.monitoring.service import totals

    with httpx.Client(base_url=server.url, timeout=60) as http:
        first = http.get("/metrics").text
        before = metric(first, "sprout_queue_wait_seconds_count")
        for k in range(6):
            assert http.post("/recommend", json={"profile": profile_of(store.corpus, 10 + k), "top_k": 5}).status_code == 200
        http.get("/livez")
        text = http.get("/metrics").text
    assert metric(text, "sprout_queue_wait_seconds_count") == before + 6  # one wait per request
    # What a model health check reads from the same page: the six requests, not the health check.
    then, now = totals(first), totals(text)
    assert now["requests"] - then["requests"] == 6 and now["errors"] == then["errors"]
    assert now["cumulative"][-1] - then["cumulative"][-1] == 6 and now["le"] == then["le"]
    batches, members = metric(text, "sprout_batch_size_count"), metric(text, "sprout_batch_size_sum")
    assert 1 <= batches <= members  # a batch holds at least one request
    assert metric(text, "sprout_batch_size_bucket", le="32.0") == batches
    assert metric(text, "sprout_forward_seconds_count") == batches
    assert 0 < metric(text, "sprout_forward_seconds_sum") < batches  # seconds, not milliseconds
    assert metric(text, "sprout_model_info", version=store.versions[0]) == 1
