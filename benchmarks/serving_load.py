"""Sustained load on /recommend: N concurrent clients for a fixed time, every answer checked.

Against a `sprout serve` started here with the default-size model on a 6,000-show synthetic
corpus (as in `benchmarks/serving.py`). Each client cycles through 32 different 300-entry
profiles and top_k values, so consecutive requests differ.
Prints requests, errors (non-200 answers and transport failures), p50/p99 latency and throughput.

    uv run python benchmarks/serving_load.py [--clients 16] [--seconds 60] [--workers 1]
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import typer

from serving import benchmark_profile, default_model_store, percentiles


def run_load(url: str, corpus_ids: np.ndarray, clients: int, seconds: float) -> None:
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
    print(f"\n/recommend under load: {clients} clients for {elapsed:.1f} s against {url}")
    print(f"  requests    {total}")
    print(f"  errors      {errors}" + (f"  {dict(outcomes)}" if errors else ""))
    print(f"  latency     p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"  throughput  {outcomes['200'] / elapsed:.1f} req/s")


def main(
    clients: int = typer.Option(16, min=1, help="Concurrent clients."),
    seconds: float = typer.Option(60.0, min=1, help="How long to keep sending."),
    workers: int = typer.Option(1, min=1, help="Server worker processes."),
    users: int = typer.Option(3000, min=500, help="Synthetic users behind the corpus."),
) -> None:
    from bentos.local_server import LocalServer

    home = Path(tempfile.mkdtemp(prefix="sprout-serving-load-"))
    store_dir, _, artifact = default_model_store(home, users)[True]
    corpus_ids = np.asarray(json.loads((artifact / "corpus.json").read_text())["anime_ids"])
    with LocalServer(store_dir, home / "serve.log", workers=workers, ready_timeout_s=1200) as server:
        run_load(server.url, corpus_ids, clients, seconds)


if __name__ == "__main__":
    typer.run(main)
