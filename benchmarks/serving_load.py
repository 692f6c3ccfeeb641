"""Sustained load on /recommend: N concurrent clients for a fixed time, every answer checked.

Against a `sprout serve` started here with the default-size model on a 6,000-show synthetic
corpus (as in `benchmarks/serving.py`). Each client cycles through 32 different 300-entry
profiles and top_k values, so consecutive requests differ. Baseline in the same run, against the
same server: one client sending the same requests one after another (``--baseline-seconds``),
before the load. Records requests, errors (non-200 answers, short answers and transport
failures), p50/p99 latency and throughput of both.

    uv run python benchmarks/serving_load.py [--clients 16] [--seconds 60] [--baseline-seconds 15] [--workers 1]

Writes ``benchmarks/results/serving_load.json``; `benchmarks/readme_tables.py` renders it.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import typer

from serving import PROFILE_LENGTH, benchmark_profile, default_model_store, percentiles


def run_load(url: str, corpus_ids: np.ndarray, clients: int, seconds: float) -> dict:
    """Requests, errors, p50/p99 latency (ms) and requests/s of ``clients`` clients for ``seconds``."""
    profiles = [benchmark_profile(corpus_ids, seed=seed) for seed in range(32)]
    latencies: list[float] = []
    outcomes: Counter = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            n = index
            while time.monotonic() < stop_at:
                body = {"profile": profiles[n % len(profiles)], "top_k": 10 + n % 41}
                n += clients
                started = time.perf_counter()
                try:
                    response = http.post("/recommend", json=body)
                    outcome = str(response.status_code)
                    if response.status_code == 200 and len(response.json()["recommendations"]) != body["top_k"]:
                        outcome = "short answer"
                except httpx.HTTPError as error:
                    outcome = type(error).__name__
                with lock:
                    outcomes[outcome] += 1
                    if outcome == "200":
                        latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    total = sum(outcomes.values())
    errors = total - outcomes["200"]
    p50, p99 = percentiles(latencies) if latencies else (float("nan"), float("nan"))
    print(f"\n/recommend: {clients} client{'s' if clients != 1 else ''} for {elapsed:.1f} s against {url}")
    print(f"  requests    {total}")
    print(f"  errors      {errors}" + (f"  {dict(outcomes)}" if errors else ""))
    print(f"  latency     p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"  throughput  {outcomes['200'] / elapsed:.1f} req/s")
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": total, "errors": errors,
            "outcomes": dict(outcomes), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
            "requests_per_s": round(outcomes["200"] / elapsed, 1)}


def main(
    clients: int = typer.Option(16, min=1, help="Concurrent clients."),
    seconds: float = typer.Option(60.0, min=1, help="How long to keep sending."),
    baseline_seconds: float = typer.Option(15.0, min=1, help="How long the one-client baseline sends."),
    workers: int = typer.Option(1, min=1, help="Server worker processes."),
    users: int = typer.Option(3000, min=500, help="Synthetic users behind the corpus."),
) -> None:
    from bentos.local_server import LocalServer
    from results import write_result

    load_average = os.getloadavg()[0]  # other jobs on the machine share its cores
    home = Path(tempfile.mkdtemp(prefix="sprout-serving-load-"))
    store_dir, _, artifact = default_model_store(home, users)["hybrid"]
    corpus_ids = np.asarray(json.loads((artifact / "corpus.json").read_text())["anime_ids"])
    with LocalServer(store_dir, home / "serve.log", workers=workers, ready_timeout_s=1200) as server:
        one_client = run_load(server.url, corpus_ids, 1, baseline_seconds)
        loaded = run_load(server.url, corpus_ids, clients, seconds)
    path = write_result("serving_load", {
        "figures": {"load": loaded, "goal_errors": 0},
        "baselines": {"one_client": one_client},
        "settings": {"clients": clients, "seconds": seconds, "baseline_seconds": baseline_seconds, "workers": workers,
                     "users": users, "corpus_size": len(corpus_ids), "profiles": 32,
                     "profile_entries": PROFILE_LENGTH},
        "notes": {"load_average_at_start": round(load_average, 2)},
    })
    print(f"written to {path}")


if __name__ == "__main__":
    typer.run(main)
