"""The HTTP service end to end: `sprout serve` on 127.0.0.1 with a tiny model from a real model
store, answering real HTTP. One server for the whole module."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import pytest

from bentos.local_server import LocalServer
from service_helpers import SERVER_ENV, SIMULATOR_SEED, SIMULATOR_SHOWS, build_model_store, profile_of, simulator_env
from sprout.malsim.server import SimulatorServer
from sprout.malsim.synthetic_population import synthetic_population

UNKNOWN_ID = 987_654_321


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_model_store(tmp_path_factory.mktemp("service"))


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    # A simulator behind the username path, so that generated usernames meet a MAL that answers.
    population = synthetic_population(20, seed=SIMULATOR_SEED, n_anime=SIMULATOR_SHOWS)
    with SimulatorServer(population) as simulator, LocalServer(
        store.store_dir, tmp_path_factory.mktemp("logs") / "serve.log", extra_env={**SERVER_ENV, **simulator_env(simulator)}
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http


def test_recommend_returns_ranked_unseen_shows(client, store):
    profile = profile_of(store.corpus, 20)
    duplicate = {**profile[0], "score": 3}
    plan_to_watch = {"anime_id": int(store.corpus.anime_ids[40]), "status": "plan_to_watch"}
    body = {"profile": [*profile, duplicate, {"anime_id": UNKNOWN_ID, "score": 7}, plan_to_watch], "top_k": 10}
    response = client.post("/recommend", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"]["version"] == store.versions[0]
    shows = [r["anime_id"] for r in answer["recommendations"]]
    assert len(shows) == 10 and len(set(shows)) == 10
    listed = {entry["anime_id"] for entry in body["profile"]}
    assert not listed & set(shows)  # profile shows (plan-to-watch too) are never recommended back
    assert set(shows) <= set(store.corpus.anime_ids.tolist())
    scores = [r["score"] for r in answer["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    assert all(r["contributors"] is None and 0 < r["probability"] <= 1 for r in answer["recommendations"])
    reasons = {(i["anime_id"], i["reason"]) for i in answer["ignored"]}
    assert (UNKNOWN_ID, "not_in_corpus") in reasons
    assert (profile[0]["anime_id"], "duplicate") in reasons
    assert (plan_to_watch["anime_id"], "rule_dropped") in reasons


def test_recommend_with_contributors(client, store):
    profile = profile_of(store.corpus, 12)
    answer = client.post("/recommend", json={"profile": profile, "top_k": 5, "explain": True}).json()
    listed = {entry["anime_id"] for entry in profile}
    assert len(answer["recommendations"]) == 5
    for recommendation in answer["recommendations"]:
        contributors = recommendation["contributors"]  # entries whose removal lowers the score
        assert isinstance(contributors, list) and len(contributors) <= 3
        assert {c["anime_id"] for c in contributors} <= listed
        assert all(c["score_drop"] > 0 for c in contributors)
    assert any(r["contributors"] for r in answer["recommendations"])


def test_explain_names_profile_entries(client, store):
    profile = profile_of(store.corpus, 15, start=5)
    response = client.post("/explain", json={"profile": profile, "top_k": 8})
    assert response.status_code == 200, response.text
    answer = response.json()
    listed = {entry["anime_id"] for entry in profile}
    assert answer["model"]["version"] == store.versions[0]
    assert len(answer["recommendations"]) == 8
    assert not listed & {r["anime_id"] for r in answer["recommendations"]}
    assert 1 <= len(answer["most_impactful"]) <= 10
    assert {i["anime_id"] for i in answer["most_impactful"]} <= listed
    impacts = [i["impact"] for i in answer["most_impactful"]]
    assert impacts == sorted(impacts, reverse=True)
    assert {s["anime_id"] for s in answer["most_surprising"]} <= listed
    assert all(1 <= s["actual"] <= 10 for s in answer["most_surprising"])
    assert all(isinstance(r["contributors"], list) for r in answer["recommendations"])
    assert any(r["contributors"] for r in answer["recommendations"])


def test_predict_answers_for_named_shows(client, store):
    profile = profile_of(store.corpus, 15)
    inside = profile[0]["anime_id"]
    outside = [int(a) for a in store.corpus.anime_ids[30:34]]
    response = client.post("/predict", json={"profile": profile, "shows": [*outside, inside, UNKNOWN_ID]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"]["version"] == store.versions[0]
    assert [p["anime_id"] for p in answer["predictions"]] == [*outside, inside]
    assert all(0 < p["probability"] < 1 and 1 <= p["predicted_rating"] <= 10 for p in answer["predictions"])
    assert [p["in_profile"] for p in answer["predictions"]] == [False] * 4 + [True]
    assert (UNKNOWN_ID, "unknown_show") in {(i["anime_id"], i["reason"]) for i in answer["ignored"]}
    recommended = client.post("/recommend", json={"profile": profile, "top_k": 500, "hide_unwatched_sequels": False})
    by_id = {r["anime_id"]: r for r in recommended.json()["recommendations"]}
    for prediction in answer["predictions"][:4]:  # the same figures /recommend gives those shows
        assert prediction["probability"] == pytest.approx(by_id[prediction["anime_id"]]["probability"], rel=1e-4)
    for body, needle in (({"profile": profile, "shows": []}, "shows"), ({"shows": [1]}, "exactly one"),
                         ({"profile": profile, "shows": ["x"]}, "shows")):
        refused = client.post("/predict", json=body)
        assert refused.status_code == 400 and needle in refused.text, refused.text


def test_model_matches_the_registry(client, store):
    response = client.get("/model")
    assert response.status_code == 200
    info = response.json()
    record = store.registry().champion()
    assert info["version"] == record.version == store.versions[0]
    assert info["stage"] == "champion"
    assert info["metrics"] == record.metadata["metrics"]
    assert info["parameters"] == record.metadata["parameters"]
    assert info["corpus_size"] == len(store.corpus)
    # Every shape was compiled at start-up: the requests above compiled nothing.
    assert response.headers["X-Sprout-Compilations"] == "0"


def test_openapi_documents_the_endpoints(client):
    spec = client.get("/docs.json").json()
    assert {"/recommend", "/explain", "/model", "/livez", "/readyz", "/metrics"} <= set(spec["paths"])
    request = spec["paths"]["/recommend"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"profile", "top_k", "rating_weight", "explain"} <= set(request["properties"])
    assert "ModelInfo" in json.dumps(spec["paths"]["/model"])


def _profile_body(n: int) -> dict:
    return {"profile": [{"anime_id": i, "score": 5} for i in range(1, n + 1)]}


def _chunks(payload: bytes, size: int = 64 * 1024):
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


JSON = {"content-type": "application/json"}
BIG_BODY = json.dumps({"profile": [], "exclude": list(range(200_000))}).encode()  # about 1.3 MB
assert len(BIG_BODY) > 1.1 * (1 << 20)

BAD_REQUESTS = {
    # name: (path, body (dict, bytes or generator factory), headers, status, text in the answer)
    "anime id as a string": ("/recommend", {"profile": [{"anime_id": "5"}]}, {}, 400, "anime_id"),
    "top_k as a string": ("/recommend", {"profile": [{"anime_id": 5}], "top_k": "5"}, {}, 400, "top_k"),
    "top_k zero": ("/recommend", {"profile": [{"anime_id": 5}], "top_k": 0}, {}, 400, "top_k"),
    "rating weight false": ("/recommend", {"profile": [{"anime_id": 5}], "rating_weight": False}, {}, 400, "rating_weight"),
    "missing profile": ("/recommend", {"top_k": 5}, {}, 400, "profile"),
    "profile and username": ("/recommend", {"profile": [{"anime_id": 5}], "username": "someone"}, {}, 400, "username"),
    "username not a name": ("/recommend", {"username": "../../etc"}, {}, 400, "not a MyAnimeList username"),
    "export not XML": ("/profile/export", b"not xml at all", {"content-type": "application/xml"}, 400, "well-formed"),
    "profile not a list": ("/recommend", {"profile": {"anime_id": 5}}, {}, 400, "profile"),
    "score 11": ("/recommend", {"profile": [{"anime_id": 5, "score": 11}]}, {}, 400, "score"),
    "score -1": ("/recommend", {"profile": [{"anime_id": 5, "score": -1}]}, {}, 400, "score"),
    "unknown status": ("/recommend", {"profile": [{"anime_id": 5, "status": "binged"}]}, {}, 400, "status"),
    "unknown field": ("/recommend", {"profile": [{"anime_id": 5}], "limit": 3}, {}, 400, "limit"),
    "empty profile": ("/recommend", {"profile": []}, {}, 400, "profile"),
    "only unknown shows": ("/recommend", {"profile": [{"anime_id": UNKNOWN_ID, "score": 8}]}, {}, 400, "profile"),
    "5001 entries": ("/recommend", _profile_body(5001), {}, 413, "5000"),
    "explain empty profile": ("/explain", {"profile": []}, {}, 400, "profile"),
    "explain 5001 entries": ("/explain", _profile_body(5001), {}, 413, "5000"),
    "body over 1 MiB": ("/recommend", BIG_BODY, JSON, 413, "larger than"),
    "chunked body over 1 MiB": ("/recommend", lambda: _chunks(BIG_BODY), JSON, 413, "larger than"),
    "bad JSON": ("/recommend", b'{"profile": [', JSON, 400, "json"),
    "JSON array": ("/recommend", b"[1, 2]", JSON, 400, "error"),
    "empty body": ("/recommend", b"", JSON, 400, "profile"),
    "plain text": ("/recommend", b"profile", {"content-type": "text/plain"}, 415, "application/json"),
    "multipart without boundary": ("/recommend", b"x", {"content-type": "multipart/form-data"}, 415, "application/json"),
    "form fields": ("/explain", b"profile=1", {"content-type": "application/x-www-form-urlencoded"}, 415, "application/json"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_input_is_a_client_error(client, name):
    path, body, headers, status, text = BAD_REQUESTS[name]
    if isinstance(body, dict):
        response = client.post(path, json=body)
    else:
        response = client.post(path, content=body() if callable(body) else body, headers=headers)
    assert response.status_code == status, response.text
    assert text.lower() in response.text.lower()


def test_wrong_method_is_405(client):
    assert client.get("/recommend").status_code == 405
    assert client.post("/model", json={}).status_code == 405


def test_schemathesis_finds_no_server_error(server, tmp_path):
    """Property-based requests generated from the service's own OpenAPI document."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/docs.json",
        "--checks", "not_a_server_error,negative_data_rejection", "--max-examples", "40", "--seed", "7",
        "--phases", "coverage,fuzzing", "--request-timeout", "60", "--no-color", "--workers", "2",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # Most generated profiles name unknown shows and are rightly refused (schemathesis warns of
    # that); what counts is that every case passed the checks.
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts and counts[1] == counts[2] and int(counts[1]) >= 100, result.stdout[-3000:]


def test_sixteen_clients_for_ten_seconds(server, store):
    statuses: Counter = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 10

    def client_loop(seed: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            n = 0
            while time.monotonic() < stop_at:
                body = {"profile": profile_of(store.corpus, 5 + (seed + n) % 30, start=(seed * 7 + n) % 60), "top_k": 20}
                try:
                    status = http.post("/recommend", json=body).status_code
                except httpx.HTTPError as error:
                    with lock:
                        failures.append(repr(error))
                    continue
                with lock:
                    statuses[status] += 1
                n += 1

    threads = [threading.Thread(target=client_loop, args=(seed,)) for seed in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert set(statuses) == {200}, statuses
    assert statuses[200] >= 100  # a tiny model on two cores answers hundreds a second


def test_server_survived_everything(client, server):
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "bentoml" in metrics.text
    log = server.log()
    assert "status=500" not in log and "status=413" in log  # every client mistake was answered 4xx
    assert "Traceback" not in log  # client errors are one-line records, not tracebacks
