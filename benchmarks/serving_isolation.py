"""Plain /recommend latency while other clients ask for explanations of long profiles.

Setup (not timed): the default-size hybrid model on a 6,000-show synthetic corpus, as in
`benchmarks/serving.py`, served by `sprout serve` on 127.0.0.1. One client sends plain
/recommend requests one after another (32 different 300-entry profiles in turn), first alone
(idle), then while two more clients keep sending ``explain: true`` requests with 5,000-entry
profiles. Goal: plain p99 beside the explanations at most 3× the idle p99.

Measured in the same run, in-process (the engine and `RequestBatcher`, no HTTP): the same idle and
loaded phases with explanations on their own lane (as served) and with the earlier behaviour,
where the leave-one-out pass ran inside the shared batch (``explain_in_batch=True``).

    uv run python benchmarks/serving_isolation.py [--idle-s 15] [--loaded-s 30] [--users 3000]

Writes ``benchmarks/results/serving_isolation.json``; `benchmarks/readme_tables.py` renders it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import typer

from serving import benchmark_profile, default_model_store, percentiles

PLAIN_PROFILE_LENGTH = 300
EXPLAINED_PROFILE_LENGTH = 5000
EXPLAINING_CLIENTS = 2
GOAL_RATIO = 3.0

Send = Callable[[int], None]  # sends the n-th request of its kind; raises when the answer is wrong


def request_bodies(corpus_ids: np.ndarray) -> tuple[list[dict], list[dict]]:
    """32 plain bodies (300 entries) and one explained body (5,000 entries) per explaining client."""
    plain = [{"profile": benchmark_profile(corpus_ids, PLAIN_PROFILE_LENGTH, seed=seed), "top_k": 50}
             for seed in range(32)]
    explained = [{"profile": benchmark_profile(corpus_ids, EXPLAINED_PROFILE_LENGTH, seed=100 + client),
                  "top_k": 50, "explain": True} for client in range(EXPLAINING_CLIENTS)]
    return plain, explained


def summary(latencies_s: list[float], failures: int) -> dict:
    p50, p99 = percentiles(latencies_s) if latencies_s else (float("nan"), float("nan"))
    return {"p50": round(p50, 2), "p99": round(p99, 2), "requests": len(latencies_s), "failed": failures}


def plain_phase(send_plain: Send, seconds: float, explainers: list[Send]) -> dict:
    """Plain requests one after another for ``seconds``, each explainer looping beside them."""
    stop = threading.Event()
    explained: list[float] = []
    failures = {"plain": 0, "explained": 0}
    lock = threading.Lock()

    def explain_loop(send: Send) -> None:
        n = 0
        while not stop.is_set():
            started = time.perf_counter()
            try:
                send(n)
                with lock:
                    explained.append(time.perf_counter() - started)
            except Exception:  # noqa: BLE001  (counted, the run goes on)
                with lock:
                    failures["explained"] += 1
            n += 1

    threads = [threading.Thread(target=explain_loop, args=(send,)) for send in explainers]
    for thread in threads:
        thread.start()
    if explainers:
        time.sleep(2.0)  # every explainer is in its loop before the plain requests are timed
    latencies: list[float] = []
    stop_at, n = time.monotonic() + seconds, 0
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        try:
            send_plain(n)
            latencies.append(time.perf_counter() - started)
        except Exception:  # noqa: BLE001
            failures["plain"] += 1
        n += 1
    stop.set()
    for thread in threads:
        thread.join()
    result = {"plain_ms": summary(latencies, failures["plain"])}
    if explainers:
        result["explained_ms"] = summary(explained, failures["explained"])
    return result


def idle_and_loaded(send_plain: Send, send_explained: Callable[[int], Send], idle_s: float, loaded_s: float) -> dict:
    for n in range(5):  # warm the path
        send_plain(n)
    idle = plain_phase(send_plain, idle_s, [])
    loaded = plain_phase(send_plain, loaded_s, [send_explained(c) for c in range(EXPLAINING_CLIENTS)])
    return {
        "idle_ms": idle["plain_ms"],
        "beside_explanations_ms": loaded["plain_ms"],
        "explained_ms": loaded["explained_ms"],
        "p99_ratio": round(loaded["plain_ms"]["p99"] / idle["plain_ms"]["p99"], 2),
    }


def over_http(url: str, plain: list[dict], explained: list[dict], idle_s: float, loaded_s: float) -> dict:
    local = threading.local()
    # Bodies are encoded once: writing a 5,000-entry profile as JSON would hold this process's
    # interpreter lock for milliseconds and delay the plain client's timing, not the server.
    plain_bytes = [json.dumps(body).encode() for body in plain]
    explained_bytes = [json.dumps(body).encode() for body in explained]

    def post(content: bytes, top_k: int) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=url, timeout=300, headers={"content-type": "application/json"})
        response = local.http.post("/recommend", content=content)
        response.raise_for_status()
        if len(response.json()["recommendations"]) != top_k:
            raise ValueError("short answer")

    return idle_and_loaded(
        lambda n: post(plain_bytes[n % len(plain)], plain[n % len(plain)]["top_k"]),
        lambda c: lambda n: post(explained_bytes[c], explained[c]["top_k"]),
        idle_s,
        loaded_s,
    )


def in_process(artifact: Path, plain: list[dict], explained: list[dict], idle_s: float, loaded_s: float) -> dict:
    from sprout.inference.batching import RequestBatcher
    from sprout.inference.engine import Recommender
    from sprout.inference.requests import RecommendRequest

    recommender = Recommender.load(artifact)
    plain_requests = [RecommendRequest.model_validate(body) for body in plain]
    explained_requests = [RecommendRequest.model_validate(body) for body in explained]
    figures = {}
    for mode, in_batch in (("explanation_lane", False), ("in_batch", True)):
        batcher = RequestBatcher(recommender, explain_in_batch=in_batch)
        figures[mode] = idle_and_loaded(
            lambda n, b=batcher: b.submit(plain_requests[n % len(plain_requests)]),
            lambda c, b=batcher: lambda n: b.submit(explained_requests[c]),
            idle_s,
            loaded_s,
        )
        figures[mode]["compilations_after_warm_up"] = recommender.compilations
    return figures


def main(
    idle_s: float = typer.Option(15.0, min=1, help="Seconds of plain requests alone, per measurement."),
    loaded_s: float = typer.Option(30.0, min=1, help="Seconds of plain requests beside the explanations."),
    users: int = typer.Option(3000, min=500, help="Synthetic users behind the corpus."),
) -> None:
    from bentos.local_server import LocalServer
    from results import write_result

    load_average = os.getloadavg()[0]  # other jobs on the machine share its cores
    home = Path(tempfile.mkdtemp(prefix="sprout-serving-isolation-"))
    store_dir, _, artifact = default_model_store(home, users)["hybrid"]
    corpus_ids = np.asarray(json.loads((artifact / "corpus.json").read_text())["anime_ids"])
    plain, explained = request_bodies(corpus_ids)
    with LocalServer(store_dir, home / "serve.log", ready_timeout_s=1200) as server:
        served = over_http(server.url, plain, explained, idle_s, loaded_s)
    baselines = in_process(artifact, plain, explained, idle_s, loaded_s)
    figures = {"http": served, "goal_p99_ratio": GOAL_RATIO}
    settings = {"plain_profile": PLAIN_PROFILE_LENGTH, "explained_profile": EXPLAINED_PROFILE_LENGTH,
                "explaining_clients": EXPLAINING_CLIENTS, "plain_clients": 1, "idle_s": idle_s, "loaded_s": loaded_s,
                "corpus_size": len(corpus_ids), "users": users, "load_average_at_start": round(load_average, 2)}
    path = write_result("serving_isolation", {"figures": figures, "baselines": {"in_process": baselines},
                                              "settings": settings})
    print(f"\nplain /recommend p50 / p99, one client; beside it {EXPLAINING_CLIENTS} clients explaining "
          f"{EXPLAINED_PROFILE_LENGTH:,}-entry profiles")
    rows = [("HTTP, explanation lane", served)] + [(f"in-process, {mode.replace('_', ' ')}", figures_)
                                                   for mode, figures_ in baselines.items()]
    for name, result in rows:
        idle, loaded = result["idle_ms"], result["beside_explanations_ms"]
        print(f"  {name:32} idle {idle['p50']:.1f} / {idle['p99']:.1f} ms   beside explanations "
              f"{loaded['p50']:.1f} / {loaded['p99']:.1f} ms   p99 ×{result['p99_ratio']:.1f}   "
              f"explained p50 {result['explained_ms']['p50'] / 1000:.2f} s ({result['explained_ms']['requests']})")
    print(f"written to {path}")


if __name__ == "__main__":
    typer.run(main)
